"""Benchmarking an export counts the export's own architecture: the model config travels in
the export metadata, so a searched backbone gets its own params and FLOPs; an export written
before the config was carried is counted as its preset, with a note."""

from __future__ import annotations

import json

import pytest
import torch

import damoyolo
from damoyolo.cli import main
from damoyolo.metadata import MetadataError, read_metadata
from damoyolo.models.complexity import model_complexity
from damoyolo.workflows.bench import open_bench_detector

torch.set_num_threads(1)
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
HW = (64, 64)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """The S preset with a backbone of the MAE-NAS search space (not a packaged structure),
    exported to ONNX."""
    from damoyolo.config import apply_overrides
    from damoyolo.export import export_onnx
    from damoyolo.models.backbones.structure import dump_structure
    from damoyolo.nas.space import initial_structure, to_detector_form
    from damoyolo.presets import get_preset
    d = tmp_path_factory.mktemp("bench")
    f = d / "searched.txt"
    f.write_text(dump_structure(to_detector_form(initial_structure("k1kx"))))
    cfg = apply_overrides(get_preset("damoyolo-s").model, [f"backbone.structure={f}"])
    torch.manual_seed(0)
    m = damoyolo.build_model(cfg, class_names=["a", "b", "c"])
    f.unlink()  # the export carries the structure itself, not the file's path
    return d, m, export_onnx(m, d / "searched.onnx", imgsz=HW, simplify=False)


def _rewrite_meta(src, dst, change):
    """A copy of the ONNX export ``src`` whose metadata JSON is ``change(meta dict)``."""
    m = onnx.load(str(src))
    for e in m.metadata_props:
        if e.key == "damoyolo":
            meta = json.loads(e.value)
            e.value = json.dumps(change(meta))
    dst.write_bytes(m.SerializeToString())
    return dst


def test_bench_of_an_export_counts_its_own_architecture(searched, capsys):
    d, m, path = searched
    meta = read_metadata(path)
    assert meta.model == m.cfg and meta.model.backbone.structure.startswith("{")
    own = model_complexity(m, HW)
    preset = model_complexity(damoyolo.build_model("damoyolo-s", num_classes=3), HW)
    assert own[1] < 0.9 * preset[1]  # the searched backbone is far smaller than S's
    det, net = open_bench_detector(path, threads=1, log=pytest.fail)
    assert det.backend.name == "onnxruntime" and net.cfg == m.cfg
    assert model_complexity(net, det.input_size) == own
    js = d / "b.json"
    assert main(["bench", "--weights", str(path), "--runs", "1", "--warmup", "0",
                 "--threads", "1", "--json", str(js)]) == 0
    res = json.loads(js.read_text())
    assert res["gflops"] == round(own[1], 3) and res["params_m"] == round(own[0], 3)
    assert "note:" not in capsys.readouterr().out


def test_an_export_without_the_model_config_is_counted_as_its_preset(searched, capsys):
    """A file exported before the config was carried: it loads, runs, and its architecture is
    rebuilt from the preset name as before (with a note saying so)."""
    d, m, path = searched
    old = _rewrite_meta(path, d / "old.onnx",
                        lambda meta: {k: v for k, v in meta.items() if k != "model"})
    meta = read_metadata(old)
    assert meta.model is None and meta.preset == "damoyolo-s"
    notes = []
    det, net = open_bench_detector(old, threads=1, log=notes.append)
    assert len(notes) == 1 and "carries no model config" in notes[0] and "damoyolo-s" in notes[0]
    preset = damoyolo.build_model("damoyolo-s", num_classes=3)
    assert net.cfg == preset.cfg
    assert model_complexity(net, HW) == model_complexity(preset, HW)
    x = torch.rand(1, 3, *HW, generator=torch.Generator().manual_seed(0)) * 255
    new_det = damoyolo.Detector(str(path), threads=1)
    for a, b in zip(det.forward(x), new_det.forward(x)):
        assert torch.equal(a, b)  # the same graph, read through either metadata
    js = d / "old.json"
    assert main(["bench", "--weights", str(old), "--runs", "1", "--warmup", "0",
                 "--threads", "1", "--json", str(js)]) == 0
    assert "carries no model config" in capsys.readouterr().out
    assert json.loads(js.read_text())["gflops"] == round(model_complexity(preset, HW)[1], 3)


def test_new_metadata_keeps_every_key_older_readers_use(searched):
    _, m, path = searched
    props = {e.key: e.value for e in onnx.load(str(path)).metadata_props}
    raw = json.loads(props["damoyolo"])
    old_keys = {"format", "damoyolo_version", "preset", "class_names", "category_ids",
                "input_size", "preprocessing", "mode", "reg_max", "strides", "conf_thresh",
                "iou_thresh", "opset", "dynamic_batch", "outputs", "batch"}
    assert old_keys <= set(raw) and set(raw) - old_keys == {"model"}
    assert raw["class_names"] == ["a", "b", "c"] and raw["input_size"] == [64, 64]
    from damoyolo.config import to_dict
    assert raw["model"] == to_dict(m.cfg)


@pytest.mark.parametrize("change, msg", [
    (lambda meta: {**meta, "model": [1]}, "'model' is list"),
    (lambda meta: {**meta, "model": {**meta["model"], "colour": 1}}, "not a model config"),
    (lambda meta: {**meta, "model": {**meta["model"], "head": {
        **meta["model"]["head"], "num_classes": 7}}}, "disagrees"),
])
def test_crafted_model_config_is_one_clear_error(searched, tmp_path, change, msg):
    _, _, path = searched
    p = _rewrite_meta(path, tmp_path / "crafted.onnx", change)
    with pytest.raises(MetadataError, match=msg):
        read_metadata(p)


def test_model_config_out_of_bounds_is_refused_before_building(searched, tmp_path, capsys):
    _, _, path = searched

    def huge(meta):
        model = json.loads(json.dumps(meta["model"]))
        model["neck"]["out_channels"] = [10 ** 6] * 3
        return {**meta, "model": model}

    p = _rewrite_meta(path, tmp_path / "huge.onnx", huge)
    with pytest.raises(MetadataError, match="out of bounds"):
        open_bench_detector(p, threads=1)
    assert main(["bench", "--weights", str(p), "--runs", "1", "--warmup", "0",
                 "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "huge.onnx" in err[0] and "out of bounds" in err[0]
