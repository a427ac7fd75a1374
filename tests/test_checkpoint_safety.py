"""Checkpoints are untrusted data: loading never runs code; searched structures travel inside."""

import os
import re

import numpy as np
import pytest
import torch

import damoyolo
from damoyolo.checkpoint import CheckpointError, load_model, read_checkpoint, save_model
from damoyolo.models.backbones.structure import dump_structure, load_structure


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_without_running(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"model": {"backbone.block_list.0.weight": torch.zeros(1)}, "x": _Evil(marker)},
               evil)
    with pytest.raises(CheckpointError, match="refused: loading it would run code"):
        load_model(evil, model="damoyolo-ns")
    assert not marker.exists()
    import cv2
    from damoyolo.cli import main
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((64, 64, 3), 127, np.uint8))
    assert main(["predict", "--weights", str(evil), "--source", str(tmp_path / "a.jpg"),
                 "--out", str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused" in err[0] and "--trust-code" in err[0]
    assert not marker.exists()


def test_a_searched_structure_travels_inside_the_checkpoint(tmp_path):
    blocks = load_structure("tinynas_nano_small")
    f = tmp_path / "best.txt"
    f.write_text(dump_structure(blocks))
    cfg = damoyolo.get_preset("damoyolo-ns").model
    import dataclasses
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, structure=str(f)))
    m = damoyolo.build_model(cfg).eval()
    assert m.cfg.backbone.structure.startswith("{")  # the structure, not its path
    save_model(m, tmp_path / "m.pt")
    f.unlink()
    m2 = load_model(tmp_path / "m.pt")
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        a, b = m(x), m2(x)
    assert all(torch.equal(p, q) for p, q in zip(a.cls + a.reg, b.cls + b.reg))
    assert load_structure(m2.cfg.backbone.structure) == blocks


def test_an_old_checkpoint_with_numpy_state_upgrades_once(tmp_path):
    m = damoyolo.build_model("damoyolo-ns", num_classes=3)
    old = tmp_path / "old.pt"
    save_model(m, old, rng={"numpy": np.random.get_state()})  # as version 0.1 wrote it
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(old)
    from damoyolo.cli import main
    assert main(["convert", "--trust-code", str(old), str(tmp_path / "new.pt")]) == 0
    ck = read_checkpoint(tmp_path / "new.pt")
    assert torch.is_tensor(ck["rng"]["numpy"][1])
    assert load_model(tmp_path / "new.pt").num_classes == 3


def test_unsafe_torch_versions_are_refused_before_reading(tmp_path):
    from damoyolo.checkpoint import CheckpointError, check_safe_torch, read_checkpoint
    for v in ("2.5.1", "2.9.0+cpu", "1.13.1"):
        with pytest.raises(CheckpointError, match=re.escape(f"torch {v} cannot read")):
            check_safe_torch(v)
    for v in ("2.10.0", "2.13.0+cpu", "3.0.0"):
        check_safe_torch(v)
    import torch
    real = torch.__version__
    try:
        torch.__version__ = "2.5.1"
        with pytest.raises(CheckpointError, match="CVE-2025-32434"):
            read_checkpoint(tmp_path / "any.pt")
    finally:
        torch.__version__ = real


@pytest.fixture(scope="module")
def saved_ns(tmp_path_factory):
    p = tmp_path_factory.mktemp("ck") / "ok.pt"
    save_model(damoyolo.build_model("damoyolo-ns", class_names=["a", "b"]), p,
               category_ids=[3, 7])
    return p


def _edit_ema_none_no_model(ck):
    ck.pop("model")
    ck["ema"] = None


CRAFTED = {  # name -> (edit of a valid checkpoint, what the one-line error says)
    "ema_none_without_model": (_edit_ema_none_no_model, "without weights"),
    "ema_is_a_tensor": (lambda ck: ck.update(ema=torch.tensor([0., 0.])),
                        "'ema' is a Tensor, not a state dict"),
    "model_is_a_tensor": (lambda ck: ck.update(model=torch.zeros(2)),
                          "'model' is a Tensor, not a state dict"),
    "model_is_a_list": (lambda ck: ck.update(model=[1, 2]), "'model' is a list"),
    "model_has_an_int_key": (lambda ck: ck.update(model={**ck["model"], 5: torch.zeros(1)}),
                             "key 5 that is not a parameter name"),
    "category_ids_a_string": (lambda ck: ck.update(category_ids="37"), "'category_ids' must"),
    "category_ids_too_short": (lambda ck: ck.update(category_ids=[1]), "list of 2 integers"),
    "category_ids_too_long": (lambda ck: ck.update(category_ids=[1, 2, 3]), "got [1, 2, 3]"),
    "category_ids_not_ints": (lambda ck: ck.update(category_ids=[1, "b"]), "'category_ids'"),
    "category_ids_floats": (lambda ck: ck.update(category_ids=[1.0, 2.0]), "'category_ids'"),
    "category_ids_bools": (lambda ck: ck.update(category_ids=[True, False]), "'category_ids'"),
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_weights_and_category_ids_are_one_clear_error(name, saved_ns, tmp_path):
    edit, says = CRAFTED[name]
    ck = torch.load(saved_ns, weights_only=True)
    edit(ck)
    p = tmp_path / "crafted.pt"
    torch.save(ck, p)
    with pytest.raises(CheckpointError) as e:
        load_model(p)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and str(p) in msg and says in msg, msg


def test_stored_weights_choice(saved_ns, tmp_path):
    """'ema' when it holds weights, else 'model' (None or an empty EMA); category ids kept."""
    ck = torch.load(saved_ns, weights_only=True)
    for ema in (None, {}):
        torch.save({**ck, "ema": ema}, tmp_path / "a.pt")
        m = load_model(tmp_path / "a.pt")
        assert m.category_ids == [3, 7]
    zeros = {k: torch.zeros_like(v) for k, v in ck["model"].items()}
    torch.save({**ck, "ema": {"state_dict": zeros}}, tmp_path / "b.pt")
    m = load_model(tmp_path / "b.pt")
    assert all(float(v.abs().sum()) == 0 for v in m.state_dict().values()
               if v.is_floating_point() and v.numel())
