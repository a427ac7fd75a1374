"""Core install: a command needing a missing optional package says in one line which extra
installs it (exit status 2, no traceback); a command that can tell beforehand fails before
doing any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from damoyolo._optional import MissingDependency, missing_message
from damoyolo.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    from damoyolo import build_model, save_model
    p = tmp_path_factory.mktemp("ck") / "m.pt"
    save_model(build_model("damoyolo-ns", num_classes=2), p)
    return p


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_export_without_onnx_names_the_extra(ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ModuleNotFoundError
    assert main(["export", "--weights", str(ckpt), "--out", str(tmp_path / "m.onnx"),
                 "--imgsz", "64"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("damoyolo export: error:") and "onnx" in line
    assert "damoyolo[export]" in line
    assert not (tmp_path / "m.onnx").exists()


def test_bench_onnxruntime_without_onnx_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["bench", "--model", "damoyolo-ns", "--imgsz", "64", "--backend",
                 "onnxruntime", "--runs", "1", "--warmup", "0"]) == 2
    assert "damoyolo[export]" in _one_line(capsys.readouterr().err)


def test_backend_without_runtime_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    import cv2
    import numpy as np
    fake = tmp_path / "m.onnx"
    fake.write_bytes(b"not a model")
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((32, 32, 3), np.uint8))
    assert main(["predict", "--weights", str(fake), "--source", str(tmp_path / "a.png"),
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "onnxruntime" in line and "damoyolo[export]" in line


@pytest.mark.parametrize("cmd", [
    ["train", "--data", "nowhere"],
    ["train", "--data", "nowhere", "--set", "train.eval_interval=2"],
    ["distill", "--data", "nowhere", "--teacher", "damoyolo-s"],
    ["val", "--weights", "nowhere.pt", "--data", "nowhere"],
    ["demo", "--out", "nowhere"],
])
def test_evaluation_without_faster_coco_eval_fails_first(cmd, monkeypatch, capsys):
    """Checked before the data is read (``nowhere`` would be the error otherwise) -- not
    after an epoch of training, which would lose it."""
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)
    assert main(cmd) == 2
    line = _one_line(capsys.readouterr().err)
    assert "faster-coco-eval" in line and "damoyolo[train]" in line
    assert "nowhere" not in line


def test_training_without_evaluation_does_not_need_faster_coco_eval(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)
    assert main(["train", "--data", "nowhere", "--set", "train.eval_interval=0"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "faster-coco-eval" not in line and "nowhere" in line  # got as far as the data


def test_missing_message_only_for_optional_packages():
    assert "damoyolo[export]" in missing_message(ModuleNotFoundError("x", name="onnxslim"))
    assert "damoyolo[nas]" in missing_message(ModuleNotFoundError("x", name="scipy.interpolate"))
    assert missing_message(MissingDependency("feature needs pkg (pip install 'damoyolo[x]')")
                           ) == "feature needs pkg (pip install 'damoyolo[x]')"
    # a core or internal import failing is a bug: no one-line message, the traceback stays
    assert missing_message(ModuleNotFoundError("No module named 'cv2'", name="cv2")) is None
    assert missing_message(ImportError("cannot import name 'nope' from 'damoyolo'")) is None


def test_cli_process_prints_one_line_and_no_traceback(ckpt, tmp_path):
    """The installed entry point in a fresh process, onnx unimportable."""
    code = ("import sys; sys.modules['onnx'] = None\n"
            "from damoyolo.cli import main\n"
            f"sys.exit(main(['export', '--weights', {str(ckpt)!r}, '--out', "
            f"{str(tmp_path / 'm.onnx')!r}, '--imgsz', '64']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path,
                       env={"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1",
                            "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2, r.stderr
    line = _one_line(r.stderr)
    assert "damoyolo[export]" in line and "onnx" in line


def test_argument_errors_come_before_the_package_check(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)
    assert main(["train", "--data", "nowhere", "--set", "train.epoch=3"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "unknown config key 'train.epoch'" in line
    assert main(["train", "--data", "nowhere", "--imgsz", "100"]) == 2
    assert "multiple of 32" in _one_line(capsys.readouterr().err)
