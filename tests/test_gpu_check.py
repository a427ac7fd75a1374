"""benchmarks/gpu_check.py in its dry mode: the whole step sequence on the CPU (gloo DDP,
tiny throughput, the ONNX graphs TensorRT would be given run by onnxruntime), its budget
handling and its report; plus the detection comparison it uses for parity."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
STEPS = ["env", "tests", "ddp", "throughput", "trt_fp16", "parity", "int8"]

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("gpu_check_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def _run(tmp: Path, *argv: str, timeout: float = 300) -> tuple[dict, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # a SIGCHLD handler left by an earlier test's DataLoader workers can be delivered into a
    # too-small alternate signal stack on CPUs with AMX state (the kernel then kills this
    # process with SIGSEGV); the child's exit needs no handler here
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        p = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--json",
                            str(tmp / "r.json"), *argv], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=timeout)
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return json.loads((tmp / "r.json").read_text()), p.stdout


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    return _run(tmp, "--budget-s", "240")


def test_dry_run_passes_every_step_and_prints_the_report(dry):
    report, out = dry
    steps = report["steps"]
    assert list(steps) == STEPS
    failed = {k: v.get("error") or v.get("reason") or v.get("log_tail")
              for k, v in steps.items() if v["status"] != "ok"}
    assert not failed, failed
    assert report["mode"].startswith("dry-run") and report["elapsed_s"] <= report["budget_s"]
    printed = json.loads(out.splitlines()[0])  # one JSON line, then the markdown tables
    assert printed["steps"].keys() == steps.keys()
    assert printed["steps"]["parity"] == steps["parity"]
    assert "| a. environment | ok |" in out and "| g. TensorRT INT8 | ok |" in out
    assert "| model | model-only img/s | loader-only img/s | loader-fed img/s | bound by |" in out
    assert "| damoyolo-t | 128 |" in out  # latency row next to the paper's figure
    assert "| 2.78 |" in out


def test_dry_environment_and_gpu_tests(dry):
    env, tests = dry[0]["steps"]["env"], dry[0]["steps"]["tests"]
    assert env["torch"] == torch.__version__
    assert env["cuda_available"] == torch.cuda.is_available()
    if env["tensorrt"] is None:
        assert env["tensorrt_install"] == "not attempted (dry run)"
    assert "tests/test_gpu.py" in tests["files"] and tests["rc"] == 0
    if not torch.cuda.is_available():  # every GPU test is collected and skips with its reason
        assert tests["passed"] == 0 and tests["failed"] == 0 and tests["skipped"] >= 5
        assert any("CUDA" in r for r in tests["skip_reasons"])


def test_dry_ddp_runs_under_torchrun_with_gloo(dry):
    d = dry[0]["steps"]["ddp"]
    assert d["backend"] == "gloo" and d["world"] == 1 and d["rc"] == 0
    assert d["ddp_wrapped"] is True  # the trainer wraps whenever a process group exists
    assert d["sync_bn_layers"] == 0  # SyncBatchNorm needs CUDA: plain BN on the CPU
    assert d["iterations"] == 4 and d["loss_finite"] and d["checkpoint"]


def test_dry_throughput_model_only_and_loader_fed(dry):
    t = dry[0]["steps"]["throughput"]
    assert t["input"] == 128 and set(t["models"]) == {"damoyolo-t", "damoyolo-s"}
    for r in t["models"].values():
        assert r["model_only_img_s"] > 0 and r["loader_only_img_s"] > 0
        assert r["loader_fed_img_s"] > 0
        slower_loader = r["loader_only_img_s"] < r["model_only_img_s"]
        assert r["bound_by"] == ("data loader" if slower_loader else "model step")


def test_dry_latency_parity_and_int8_stand_ins(dry):
    steps = dry[0]["steps"]
    row = steps["trt_fp16"]["rows"]["damoyolo-t"]
    assert 0 < row["median_ms"] <= row["p90_ms"] and row["paper_t4_ms"] == 2.78
    assert 0 < row["torch_median_ms"] <= row["torch_p90_ms"]  # the baseline of the same run
    p = steps["parity"]
    assert p["torch_detections"] and min(p["torch_detections"]) > 0
    assert p["fp32"]["equal"] is True, p["fp32"]
    assert p["fp32"]["engine_detections"] == p["torch_detections"]
    assert 0.0 <= p["fp16"]["matched_iou90"] <= 1.0
    assert steps["int8"]["rows"]["damoyolo-t"]["median_ms"] > 0


def test_spent_budget_skips_the_remaining_steps_and_still_reports(tmp_path):
    report, out = _run(tmp_path, "--budget-s", "5", timeout=60)
    steps = report["steps"]
    assert steps["env"]["status"] in ("ok", "timeout")
    for name in STEPS[1:]:
        assert steps[name]["status"] == "skipped", steps[name]
        assert "budget spent" in steps[name]["reason"]
    assert report["elapsed_s"] < 5 + 10
    assert "| b. pytest -m gpu | skipped | budget spent" in out


def test_match_detections_finds_moved_boxes_and_missing_detections(check):
    from damoyolo.postprocess import Detections
    ref = Detections(torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]]),
                     torch.tensor([0.9, 0.5]), torch.tensor([1, 2]))
    boxes = torch.zeros(5, 4)
    boxes[:2] = ref.boxes.flip(0)  # same detections, other order
    scores = torch.tensor([0.5, 0.9, 0, 0, 0])
    labels = torch.tensor([2, 1, -1, -1, -1], dtype=torch.int32)
    same = check.match_detections(ref, 2, boxes, scores, labels, 0.5, 1e-3)
    assert same["equal"] and same["box_err"] == 0
    moved = boxes.clone()
    moved[0, 2] += 1.0
    assert not check.match_detections(ref, 2, moved, scores, labels, 0.5, 1e-3)["equal"]
    assert check.match_detections(ref, 2, moved, scores, labels, 2.0, 1e-3)["equal"]
    assert not check.match_detections(ref, 1, boxes, scores, labels, 0.5, 1e-3)["equal"]
    relabeled = labels.clone()
    relabeled[0] = 1
    assert not check.match_detections(ref, 2, boxes, scores, relabeled, 0.5, 1e-3)["equal"]
    assert check.match_fraction(ref, 2, boxes, labels) == 1.0
    assert check.match_fraction(ref, 2, boxes, relabeled) == 0.5


# ------------------------------------------------- the TensorRT precision paths the check runs

class _Sentinel(Exception):
    pass


def _fake_tensorrt(monkeypatch, with_precision_flags: bool):
    """A stand-in ``tensorrt`` module (10.x API with precision flags, or 11.x without) and a
    visible "GPU"; the ONNX export it would be given is captured instead of run."""
    import types

    import damoyolo.export.tensorrt as trt_export
    flags = types.SimpleNamespace(**({"FP16": 1, "INT8": 2} if with_precision_flags else {}))
    fake = types.SimpleNamespace(__version__="10.13.0" if with_precision_flags else "11.4.0",
                                 BuilderFlag=flags, Logger=lambda *a: None)
    fake.Logger.WARNING = 0
    if with_precision_flags:
        fake.IInt8EntropyCalibrator2 = object
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    seen = {}

    def export_onnx(model, path, **kw):
        seen.update(kw)
        raise _Sentinel

    monkeypatch.setattr(trt_export, "to_onnx", export_onnx)
    return trt_export, seen


@pytest.mark.parametrize("flags", [True, False])
def test_tensorrt_fp16_uses_the_builder_flag_or_a_float16_graph(monkeypatch, tmp_path, flags):
    import damoyolo
    trt_export, seen = _fake_tensorrt(monkeypatch, flags)
    with pytest.raises(_Sentinel):
        trt_export.export_tensorrt(damoyolo.build_model("damoyolo-ns"), tmp_path / "m.engine",
                                   half=True, mode="raw_heads")
    assert seen["half"] is (not flags) and seen["mode"] == "raw_heads"


def test_tensorrt_11_int8_is_refused_with_the_reason(monkeypatch, tmp_path):
    import damoyolo
    from damoyolo.export.onnx import ExportError
    trt_export, seen = _fake_tensorrt(monkeypatch, False)
    with pytest.raises(ExportError, match="TensorRT 11"):
        trt_export.export_tensorrt(damoyolo.build_model("damoyolo-ns"), tmp_path / "m.engine",
                                   int8=True, calib=str(tmp_path))
    assert not seen


def test_float16_graph_has_float32_io_and_matches_the_float32_graph(tmp_path):
    import onnx
    import onnxruntime as ort

    import damoyolo
    from damoyolo.export.onnx import export_onnx, read_metadata
    torch.manual_seed(0)
    m = damoyolo.build_model("damoyolo-t").eval()
    p32 = export_onnx(m, tmp_path / "a.onnx", imgsz=(64, 64))
    p16 = export_onnx(m, tmp_path / "b.onnx", imgsz=(64, 64), half=True)
    g = onnx.load(str(p16)).graph
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert [i.type.tensor_type.elem_type for i in g.input] == [f32]
    assert [o.type.tensor_type.elem_type for o in g.output] == [f32, f32]
    conv_w = {n.input[1] for n in g.node if n.op_type == "Conv"}
    assert conv_w and all(t.data_type == f16 for t in g.initializer if t.name in conv_w)
    assert read_metadata(p16)["network_dtype"] == "float16"
    assert "network_dtype" not in read_metadata(p32)
    x = (torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255).numpy()
    run = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"images": x})
           for p in (p32, p16)]
    assert abs(run[0][0] - run[1][0]).max() < 5e-3  # scores
    assert abs(run[0][1] - run[1][1]).max() < 2.0   # boxes, input pixels
