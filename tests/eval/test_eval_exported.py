"""``damoyolo val`` on exported models: ONNX raw / end-to-end and OpenVINO score the same
COCO mAP as the torch checkpoint they came from, and a class mismatch is a clear error.

The dataset is a tiny synthetic one (``damoyolo.data.synthetic``).  The model is a seeded
Ns whose head is calibrated on the validation images so that it produces real detections;
its validation ground truth is the real synthetic boxes plus the torch model's own confident
detections with their boxes jittered by a few pixels, so that mAP is far from 0 and 1 and
moves when boxes, scores, classes or category ids of an export drift.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import damoyolo
from damoyolo.cli import main

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("faster_coco_eval")

HW = (128, 128)
MAP_TOL = 0.002


def _ap(out: str) -> dict[str, float]:
    m = re.search(r"^AP (\S+)  AP50 (\S+)  AP75 (\S+)", out, re.M)
    assert m, f"no AP line in output:\n{out}"
    return {"AP": float(m[1]), "AP50": float(m[2]), "AP75": float(m[3])}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from engine_standin import calibrated_synthetic_ns

    from damoyolo.export import export_onnx

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("valexp")
    data, idx, imgs, x, m = calibrated_synthetic_ns(d, images=12, seed=3, hw=HW)

    # ground truth: the real boxes + the model's confident detections, jittered
    det = damoyolo.Detector(m)
    gt = json.loads((data / "annotations" / "val.json").read_text())
    by_name = {im["file_name"]: im for im in gt["images"]}
    rng = np.random.default_rng(0)
    aid = max(a["id"] for a in gt["annotations"]) + 1
    added = 0
    for r, dets in zip(idx.records, det.predict_arrays(imgs)):
        im = by_name[Path(r.path).name]
        keep = dets.scores > 0.3
        for b, lab in zip(dets.boxes[keep].tolist(), dets.labels[keep].tolist()):
            w, h = b[2] - b[0], b[3] - b[1]
            if w < 2 or h < 2:
                continue
            jx, jy = rng.normal(0, 0.04 * w), rng.normal(0, 0.04 * h)
            gt["annotations"].append({"id": aid, "image_id": im["id"],
                                      "category_id": idx.category_ids[lab],
                                      "bbox": [b[0] + jx, b[1] + jy, w, h], "area": w * h,
                                      "iscrowd": 0})
            aid += 1
            added += 1
    assert added >= 10, "the calibrated model should give confident detections"
    (data / "annotations" / "val.json").write_text(json.dumps(gt))

    ckpt = d / "ns.pth"
    damoyolo.save_model(m, ckpt, category_ids=idx.category_ids)
    model = damoyolo.load_model(ckpt)
    files = {"raw": export_onnx(model, d / "raw.onnx", batch=1),
             "dyn": export_onnx(model, d / "dyn.onnx", dynamic=True, batch=2),
             "e2e": export_onnx(model, d / "e2e.onnx", mode="end2end", max_det=500)}
    return d, data, ckpt, files


def _val(capsys, weights, data, *extra) -> str:
    capsys.readouterr()
    rc = main(["val", "--weights", str(weights), "--data", str(data), "--workers", "0",
               "--batch", "3", "--device", "cpu", *map(str, extra)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def test_val_exported_onnx_matches_torch(setup, capsys):
    _, data, ckpt, files = setup
    ref_out = _val(capsys, ckpt, data)
    ref = _ap(ref_out)
    assert 0.05 < ref["AP"] < 0.95, ref
    for key in ("raw", "dyn", "e2e"):
        out = _val(capsys, files[key], data)
        got = _ap(out)
        for k in ref:
            assert abs(got[k] - ref[k]) <= MAP_TOL, (key, k, got, ref)
        # same report: per-class table with the dataset's names, timing line
        for name in ("circle", "triangle", "ring"):
            assert re.search(rf"^{name}\s+(\d\.\d{{4}}|-)$", out, re.M), out
        assert re.search(r"per image: preprocess .* inference .* nms .*\(6 images\)", out), out
    assert "onnxruntime backend, end2end outputs" in _val(capsys, files["e2e"], data)


def test_val_exported_openvino_matches_torch(setup, capsys):
    pytest.importorskip("openvino")
    from damoyolo.export.openvino import export_openvino
    d, data, ckpt, _ = setup
    ref = _ap(_val(capsys, ckpt, data))
    xml = export_openvino(damoyolo.load_model(ckpt), d / "ov" / "model.xml")
    got = _ap(_val(capsys, xml, data, "--threads", "1"))
    for k in ref:
        assert abs(got[k] - ref[k]) <= MAP_TOL, (k, got, ref)


def test_val_exported_class_mismatch(setup, capsys, tmp_path):
    import shutil
    _, data, _, files = setup
    other = tmp_path / "other"
    shutil.copytree(data, other)
    ann = other / "annotations" / "val.json"
    gt = json.loads(ann.read_text())
    gt["categories"][1]["name"] = "hexagon"
    ann.write_text(json.dumps(gt))
    capsys.readouterr()
    assert main(["val", "--weights", str(files["raw"]), "--data", str(other),
                 "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "class names differ" in err and "'triangle' vs dataset 'hexagon'" in err, err
    gt["categories"] = gt["categories"][:5]
    gt["annotations"] = [a for a in gt["annotations"] if a["category_id"] <= 5]
    ann.write_text(json.dumps(gt))
    assert main(["val", "--weights", str(files["e2e"]), "--data", str(other),
                 "--workers", "0"]) == 2
    assert "model has 6 classes" in capsys.readouterr().err
    # a wrong input size for a fixed-size export, and a file without damoyolo metadata
    assert main(["val", "--weights", str(files["raw"]), "--data", str(data),
                 "--imgsz", "160", "--workers", "0"]) == 2
    assert "cannot run at (160, 160)" in capsys.readouterr().err
    import onnx
    bare = onnx.load(str(files["raw"]))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    assert main(["val", "--weights", str(tmp_path / "bare.onnx"), "--data", str(data),
                 "--workers", "0"]) == 2
    assert "no damoyolo metadata" in capsys.readouterr().err
