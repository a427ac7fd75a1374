"""Detector (torch / onnxruntime / openvino), sources and the predict / bench commands."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

import damoyolo
from damoyolo.cli import main
from damoyolo.infer.backends import BackendError
from damoyolo.infer.results import read_predictions


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A calibrated Ns checkpoint (real detections on generated scenes) and two images."""
    from damoyolo.models.factory import calibrated_model
    from damoyolo.cli.demo import _scene
    from damoyolo.preprocess import preprocess_batch

    d = tmp_path_factory.mktemp("det")
    torch.set_num_threads(1)
    img = _scene(7, 256)[:200]  # 200x256 RGB, non-square
    m = calibrated_model("damoyolo-ns", preprocess_batch([img], (128, 128))[0])
    m.cfg = __import__("dataclasses").replace(m.cfg, input_size=(128, 128))
    ckpt = d / "ns.pth"
    damoyolo.save_model(m, ckpt)
    cv2.imwrite(str(d / "a.png"), img[:, :, ::-1])
    return d, ckpt, img


def test_detector_inputs_and_channel_order(setup):
    d, ckpt, img = setup
    det = damoyolo.Detector(ckpt)
    r = det(img)
    assert isinstance(r, damoyolo.Detections) and len(r) > 0
    assert r.boxes[:, 0::2].max() <= 256 and r.boxes[:, 1::2].max() <= 200  # original pixels
    assert r.class_names[0] == "person" and len(r.class_names) == 80  # COCO names attached
    assert r.names == [r.class_names[int(i)] for i in r.labels]
    r_path = det(str(d / "a.png"))
    torch.testing.assert_close(r_path.boxes, r.boxes)
    r_bgr = det(np.ascontiguousarray(img[:, :, ::-1]), bgr=True)
    torch.testing.assert_close(r_bgr.scores, r.scores)
    both = det([img, d / "a.png"])
    assert isinstance(both, list) and len(both) == 2
    # the boxes are the input-pixel detections scaled by original/input per axis
    batch, metas = det.preprocess([img])
    raw = det.predict_batch(batch)[0]
    want = raw.boxes * torch.tensor([256 / 128, 200 / 128, 256 / 128, 200 / 128])
    want[:, 0::2] = want[:, 0::2].clamp(0, 256)
    want[:, 1::2] = want[:, 1::2].clamp(0, 200)
    torch.testing.assert_close(r.boxes, want)


def test_detector_odd_images(setup):
    _, ckpt, img = setup
    det = damoyolo.Detector(ckpt)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    rgba = np.concatenate([img, np.full_like(img[:, :, :1], 255)], 2)
    img16 = img.astype(np.uint16) * 257
    for im in (gray, rgba, img16):
        assert isinstance(det(im), damoyolo.Detections)
    torch.testing.assert_close(det(img16).boxes, det(img).boxes)
    torch.testing.assert_close(det(rgba).boxes, det(img).boxes)
    with pytest.raises(ValueError, match="no such image"):
        det("missing.jpg")
    with pytest.raises(TypeError):
        det(42)


def _same(a, b, tol=0.05) -> bool:
    """Same detections up to order among near-equal scores: one-to-one same class, close box."""
    if len(a) != len(b):
        return False
    d = (a.boxes[:, None] - b.boxes[None]).abs().amax(-1)
    d[a.labels[:, None] != b.labels[None]] = float("inf")
    j = d.argmin(1)
    return j.unique().numel() == len(a) and bool((d[torch.arange(len(a)), j] < tol).all())


def test_detector_onnx_and_openvino_match_torch(setup):
    pytest.importorskip("onnxruntime")
    from damoyolo.export import export_onnx

    d, ckpt, img = setup
    ref = damoyolo.Detector(ckpt, max_det=50)(img)
    m = damoyolo.load_model(ckpt)
    for mode, kw in (("raw", {"batch": 2}), ("raw_heads", {"dynamic": True}),
                     ("end2end", {"max_det": 50})):
        p = export_onnx(m, d / f"{mode}.onnx", mode=mode, **kw)
        det = damoyolo.Detector(str(p), max_det=50, threads=1)
        r = det([img, img, img])  # 3 images through a static batch of 2: padded
        for x in r:
            assert len(x) == len(ref), mode
            assert _same(x, ref), mode
        if mode == "raw":
            pytest.importorskip("openvino")
            r = damoyolo.Detector(str(p), backend="openvino", max_det=50, threads=1)(img)
            assert _same(r, ref)


def test_backend_errors(setup, tmp_path):
    _, ckpt, _ = setup
    with pytest.raises(BackendError, match="backend"):
        damoyolo.Detector(tmp_path / "x.bin")
    with pytest.raises(FileNotFoundError):
        damoyolo.Detector(tmp_path / "missing.onnx")
    with pytest.raises(BackendError, match="unknown backend"):
        damoyolo.Detector(ckpt, backend="tflite")
    with pytest.raises(BackendError, match="half"):
        damoyolo.Detector(ckpt, half=True)
    with pytest.raises(ValueError, match="multiples of 32"):
        damoyolo.Detector(ckpt, imgsz=100)


def test_predict_cli_directory(setup, tmp_path, capsys):
    d, ckpt, img = setup
    src = tmp_path / "imgs"
    src.mkdir()
    cv2.imwrite(str(src / "a.jpg"), img[:, :, ::-1])
    cv2.imwrite(str(src / "gray.png"), cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
    cv2.imwrite(str(src / "deep.png"), (img.astype(np.uint16) * 257)[:, :, ::-1])
    (src / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    rc = main(["predict", "--weights", str(ckpt), "--source", str(src), "--out", str(out),
               "--save-txt", "--batch", "2", "--classes", "0", "1", "2", "3", "4", "5", "6",
               "--no-progress"])
    assert rc == 0
    head, body, summary = read_predictions(out / "predictions.jsonl")
    records = [r for r in body if r["type"] == "image"]
    errors = [r for r in body if r["type"] == "error"]
    assert len(records) == 3 and len(errors) == 1 and len(body) == 4
    assert summary["images"] == 3 and summary["errors"] == 1 and not summary["interrupted"]
    assert summary["detections"] == sum(len(r["detections"]) for r in records)
    assert head["conf"] == 0.25 and len(head["class_names"]) == 80  # the display default
    assert "broken.jpg" in errors[0]["image"]
    assert "skipped" in capsys.readouterr().err
    res = {"results": records}
    for r in res["results"]:
        assert all(x["score"] > 0.25 for x in r["detections"])
        assert (out / (r["image"].split("/")[-1].rsplit(".", 1)[0] + ".jpg")).is_file()
        assert all(x["label"] <= 6 for x in r["detections"])
    lines = (out / "labels" / "a.txt").read_text().splitlines()
    assert len(lines) == len(res["results"][0]["detections"])
    assert lines
    for line, x in zip(lines, res["results"][0]["detections"]):
        vals = [float(v) for v in line.split()]
        assert int(vals[0]) == x["label"] and all(0 <= v <= 1 for v in vals[1:5])


def test_predict_cli_video_and_glob(setup, tmp_path):
    d, ckpt, img = setup
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (256, 200))
    for i in range(4):
        w.write(np.roll(img, 8 * i, axis=1)[:, :, ::-1].copy())
    w.release()
    out = tmp_path / "vout"
    assert main(["predict", "--weights", str(ckpt), "--source", str(video), "--out", str(out),
                 "--no-progress"]) == 0
    _, body, summary = read_predictions(out / "predictions.jsonl")
    assert [r["frame"] for r in body] == [0, 1, 2, 3] and summary["frames"] == 4
    assert (out / "clip.mp4").is_file()
    assert main(["predict", "--weights", str(ckpt), "--source", str(d / "*.png"),
                 "--out", str(tmp_path / "g"), "--no-progress"]) == 0
    assert main(["predict", "--weights", str(ckpt), "--source", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "g")]) == 2


def test_bench_cli(setup, tmp_path, capsys):
    _, ckpt, _ = setup
    js = tmp_path / "b.json"
    assert main(["bench", "--weights", str(ckpt), "--runs", "3", "--warmup", "1",
                 "--threads", "1", "--json", str(js)]) == 0
    res = json.loads(js.read_text())
    assert res["threads"] == 1 and res["runs"] == 3 and res["median_ms"] > 0
    assert res["throughput"] == pytest.approx(1e3 / res["median_ms"])  # 1 image per batch
    assert res["e2e_median_ms"] >= res["median_ms"] * 0.5
    assert abs(res["params_m"] - 1.406) < 0.01
    assert "latency median" in capsys.readouterr().out


def test_val_keeps_the_evaluation_threshold_predict_the_display_one(setup):
    """val (open_predictor) and the Detector API score at the preset's 0.03 (Ns); predict
    shows 0.25 (test_predict_cli_directory)."""
    from damoyolo.infer.results import DISPLAY_CONF
    from damoyolo.workflows.evaluate import open_predictor

    _, ckpt, img = setup
    det = damoyolo.Detector(ckpt)
    assert det.conf == pytest.approx(0.03) and DISPLAY_CONF == 0.25
    pred = open_predictor(ckpt, device="cpu")
    batch, _ = det.preprocess([img])
    scores = pred(batch)[0].scores
    assert len(scores) and float(scores.min()) > 0.03
    assert float(scores.min()) < DISPLAY_CONF  # low-score boxes that predict does not draw


def test_bench_exports_a_checkpoint_on_the_fly(setup, tmp_path, capsys):
    from damoyolo.workflows.bench import open_bench_detector

    _, ckpt, _ = setup
    det, net = open_bench_detector(ckpt, backend="onnxruntime", imgsz=(64, 96), batch=2,
                                   threads=1, workdir=tmp_path)
    assert det.backend.name == "onnxruntime" and det.input_size == (64, 96)
    assert det.backend.batch == 2 and (tmp_path / "m.onnx").is_file()
    assert net.cfg.name == "damoyolo-ns"
    again, arch = open_bench_detector(tmp_path / "m.onnx", threads=1)  # an export as it is
    assert again.input_size == (64, 96) and arch.num_classes == net.num_classes
    with pytest.raises(BackendError, match="fixed input size"):
        open_bench_detector(tmp_path / "m.onnx", imgsz=(64, 64))
    js = tmp_path / "b.json"
    assert main(["bench", "--weights", str(ckpt), "--backend", "onnxruntime", "--imgsz", "64",
                 "--runs", "2", "--warmup", "0", "--threads", "1", "--json", str(js)]) == 0
    assert json.loads(js.read_text())["backend"] == "onnxruntime"
