"""Official DAMO-YOLO checkpoints: key mapping, strict loading, numeric fidelity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import damoyolo
from damoyolo.checkpoint import CheckpointError
from damoyolo.models.official import official_key_to_ours
from damoyolo.preprocess import preprocess_image, read_image

from conftest import shared_path

PRESETS = damoyolo.preset_names()


def _official_keys(name: str) -> dict[str, list[int]]:
    p = damoyolo.get_preset(name)
    return json.loads(shared_path("official", "keys", f"{p.official_config}.json").read_text())


@pytest.mark.parametrize("name", PRESETS)
def test_official_keys_map_one_to_one(name):
    off = _official_keys(name)
    model = damoyolo.build_model(name)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    kind = model.cfg.backbone.kind
    mapped: dict[str, tuple] = {}
    dropped = []
    for k, shape in off.items():
        new = official_key_to_ours(k, kind)
        if new is None:
            dropped.append(k)
            continue
        assert new not in mapped, f"{k} collides on {new}"
        mapped[new] = tuple(shape)
    assert dropped == ["head.integral.project"]
    assert set(mapped) == set(ours)
    assert all(mapped[k] == ours[k] for k in ours)


def _fake_official_sd(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    reg_max = damoyolo.get_preset(name).model.head.reg_max
    for k, shape in _official_keys(name).items():
        if k == "head.integral.project":
            sd[k] = torch.linspace(0, reg_max, reg_max + 1)
        elif k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            sd[k] = 0.5 + torch.rand(shape, generator=g)
        else:
            sd[k] = 0.1 * torch.randn(shape, generator=g)
    return sd


def test_load_official_formats_and_strictness(tmp_path):
    sd = _fake_official_sd("damoyolo-ns")
    torch.save({"model": sd}, tmp_path / "wrapped.pth")
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "ddp_bare.pth")
    a = damoyolo.load_model(tmp_path / "wrapped.pth", model="damoyolo-ns")
    b = damoyolo.load_model(tmp_path / "ddp_bare.pth", model="damoyolo-ns")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert torch.equal(a.state_dict()["head.cls_preds.0.weight"], sd["head.gfl_cls.0.weight"])

    with pytest.raises(CheckpointError, match="model="):
        damoyolo.load_model(tmp_path / "wrapped.pth")
    missing = dict(sd)
    del missing["neck.merge_3.conv1.conv.weight"]
    torch.save({"model": missing}, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): neck\.merge_3\.split1\.conv"):
        damoyolo.load_model(tmp_path / "missing.pth", model="damoyolo-ns")
    extra = dict(sd)
    extra["neck.bogus.weight"] = torch.zeros(1)
    torch.save({"model": extra}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="unexpected official keys.*neck.bogus.weight"):
        damoyolo.load_model(tmp_path / "extra.pth", model="damoyolo-ns")
    with pytest.raises(CheckpointError, match="does not fit"):
        damoyolo.load_model(tmp_path / "wrapped.pth", model="damoyolo-nm")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth: not a readable checkpoint"):
        damoyolo.load_model(tmp_path / "junk.pth", model="damoyolo-ns")


def test_official_checkpoint_with_custom_class_count(tmp_path):
    sd = _fake_official_sd("damoyolo-ns")
    for i in range(3):
        sd[f"head.gfl_cls.{i}.weight"] = sd[f"head.gfl_cls.{i}.weight"][:3]
        sd[f"head.gfl_cls.{i}.bias"] = sd[f"head.gfl_cls.{i}.bias"][:3]
    torch.save({"model": sd}, tmp_path / "c3.pth")
    m = damoyolo.load_model(tmp_path / "c3.pth", model="damoyolo-ns")
    assert m.num_classes == 3 and m.class_names is None


def test_preprocessing_matches_official():
    img = read_image(shared_path("official", "ref", "dog.jpg"))
    for size, ref_name in ((640, "dog640.npy"), (416, "dog416.npy")):
        ref = np.load(shared_path("official", "ref", ref_name))
        t, meta = preprocess_image(img, (size, size))
        assert t.shape == ref.shape[1:] and t.dtype == torch.float32
        assert np.array_equal(t.numpy(), ref[0])
        assert meta.orig_hw == img.shape[:2]


CASES = [("damoyolo-t", "damoyolo_tinynasL20_T", "dog640.npy"),
         ("damoyolo-ns", "damoyolo_tinynasL18_Ns", "dog416.npy")]


def _match(a_boxes, a_labels, b_boxes, b_labels):
    """For each detection of a: max-abs box distance to the nearest same-label detection of b."""
    d = np.full(len(a_boxes), np.inf)
    for i, (bx, lab) in enumerate(zip(a_boxes, a_labels)):
        same = b_labels == lab
        if same.any():
            d[i] = np.abs(b_boxes[same] - bx).max(1).min()
    return d


@pytest.mark.parametrize("name,stem,inp", CASES)
def test_identical_outputs_to_official(name, stem, inp):
    ref = np.load(shared_path("official", "ref", f"{stem}_dog.npz"))
    x = torch.from_numpy(np.load(shared_path("official", "ref", inp)))
    model = damoyolo.load_model(shared_path("official", "ref", f"{stem}_seed0.pth"), model=name)
    with torch.no_grad():
        scores, boxes = model.decode(model(x))
    assert np.abs(scores.numpy() - ref["scores_nodeploy"]).max() <= 2e-4
    assert np.abs(boxes.numpy() - ref["boxes_nodeploy"]).max() <= 0.05

    model.reparameterize()
    with torch.no_grad():
        out = model(x)
        scores, boxes = model.decode(out)
    assert np.abs(scores.numpy() - ref["scores"]).max() <= 2e-4
    assert np.abs(boxes.numpy() - ref["boxes"]).max() <= 0.05
    # official benchmark-mode outputs: per-level sigmoid scores and scaled DFL logits
    for i, s in enumerate((8, 16, 32)):
        assert np.abs(out.cls[i].sigmoid().numpy() - ref[f"bench_cls_s{s}"]).max() <= 2e-4
        r = ref[f"bench_reg_s{s}"]
        assert np.abs(out.reg[i].numpy() - r).max() <= 2e-3 * max(1.0, np.abs(r).max())
    # final detections: same set (within 0.05 px, same labels), same count and order of scores
    det = model.postprocess(out)[0]
    assert len(det) == int(ref["det_counts"][0])
    rb, rl, rs = ref["det_boxes"], ref["det_labels"], ref["det_scores"]
    ob, ol, os_ = det.boxes.numpy(), det.labels.numpy(), det.scores.numpy()
    assert _match(rb, rl, ob, ol).max() <= 0.05
    assert _match(ob, ol, rb, rl).max() <= 0.05
    assert np.abs(np.sort(os_) - np.sort(rs)).max() <= 2e-4
    assert (np.diff(os_) <= 0).all()


def test_convert_cli_round_trip(tmp_path):
    from damoyolo.cli import main
    src = shared_path("official", "ref", "damoyolo_tinynasL18_Ns_seed0.pth")
    dst = tmp_path / "ns.pth"
    assert main(["convert", str(src), str(dst), "--model", "damoyolo-ns"]) == 0
    a = damoyolo.load_model(src, model="damoyolo-ns")
    b = damoyolo.load_model(dst)  # self-describing: no model= needed
    assert b.cfg == a.cfg and b.class_names == a.class_names
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
