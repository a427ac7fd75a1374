"""One prepared GPU check: CUDA tests, nccl DDP with SyncBN, AMP training throughput,
TensorRT FP16 latency against the paper's T4 figures, end-to-end TensorRT parity, INT8.

    python benchmarks/gpu_check.py [--budget-s 480] [--json report.json] [--md report.md]
    python benchmarks/gpu_check.py --dry-run          # the same plumbing on a CPU

Steps, in order (each in its own process, killed when the budget is spent):

a. ``env``: torch / CUDA versions, GPU, TensorRT (when it is not importable, ``pip install
   tensorrt-cuNN`` is tried with a timeout; ``--trt-wheels DIR`` installs from local wheels).
b. ``tests``: ``pytest -m gpu`` over the test files that hold GPU tests.
c. ``ddp``: ``torchrun --nproc_per_node 1`` training a few iterations with the nccl backend
   and SyncBN on (the worker creates the one-process group; the trainer wraps the model in
   DDP whenever a process group exists).
d. ``throughput``: damoyolo-t and damoyolo-s at 640 with AMP: the trainer's step fed one
   synthetic batch already on the GPU (model-only), the real pipeline's loader alone
   (synthetic dataset, mosaic etc., ``--workers`` processes), and the trainer fed by that
   loader; the slower of model-only and loader-only is what bounds training.
e. ``trt_fp16``: FP16 TensorRT engines of T/S/M/L at batch 1, benchmark-mode graph
   (``raw_heads``: no decode, no NMS, as the paper's latency), GPU compute time per inference
   (CUDA events around ``execute_async_v3`` on its own stream, like trtexec's "GPU Compute
   Time"), median and p90, next to the paper's T4 figures; plus the median of a full
   ``TensorRTBackend`` call (host copies included).
f. ``parity``: end-to-end engines (NMS in the graph) of a calibrated damoyolo-t on a few
   synthetic images against torch (CUDA, float32 without TF32) + ``damoyolo.postprocess``:
   the same detections (count, classes, boxes paired one to one) within tolerances.
g. ``int8``: INT8 engines (entropy calibration on synthetic images) of T and S when time remains
   and the TensorRT version still has implicit INT8 calibration (< 11).

Weights are random (latency does not depend on them), data are generated on the spot,
nothing is downloaded (except the optional TensorRT install).  The report is one JSON object
(printed, and written to ``--json`` after every step, so a killed run keeps what it measured)
followed by markdown tables.

``--dry-run`` runs the same steps on the CPU at a tiny size: gloo instead of nccl, the ONNX
graphs that TensorRT would be given run by onnxruntime in place of TensorRT (INT8: an
onnxruntime static quantisation calibrated on the same synthetic images), and the GPU tests
are expected to skip.  ``tests/test_gpu_check.py`` runs it in the normal test suite.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STEPS = [("env", "a. environment"), ("tests", "b. pytest -m gpu"),
         ("ddp", "c. torchrun DDP + SyncBN"), ("throughput", "d. training throughput (AMP)"),
         ("trt_fp16", "e. TensorRT FP16 latency"), ("parity", "f. end-to-end parity"),
         ("int8", "g. TensorRT INT8")]
# the paper's / official model zoo's latency: T4, TensorRT FP16, batch 1, without NMS (ms)
PAPER_T4_MS = {"damoyolo-t": 2.78, "damoyolo-s": 3.83, "damoyolo-m": 5.62, "damoyolo-l": 7.95}
# (least seconds left to start the step, most seconds it may take): GPU run, dry run
LIMITS = {"env": ((5, 150), (2, 60)), "tests": ((20, 120), (4, 90)),
          "ddp": ((20, 90), (4, 90)), "throughput": ((30, 150), (4, 120)),
          "trt_fp16": ((40, 300), (4, 120)), "parity": ((30, 150), (4, 120)),
          "int8": ((40, 150), (4, 120))}
RESERVE_S = 2.0  # kept for writing the report


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one run (GPU or dry)."""

    dry: bool
    device: str
    backend: str
    train_size: int
    train_batch: int
    train_iters: int
    train_warmup: int
    train_models: tuple[str, ...]
    workers: int
    ddp_size: int
    trt_models: tuple[str, ...]
    lat_runs: int
    lat_warmup: int
    parity_size: int
    parity_images: int
    calib_images: int

    @staticmethod
    def make(args) -> "Settings":
        cpus = _cpus()
        if args.dry_run:
            return Settings(True, "cpu", "gloo", 128, 2, 2, 1, ("damoyolo-t", "damoyolo-s"),
                            1, 64, ("damoyolo-t",), 8, 2, 128, 2, 4)
        return Settings(False, "cuda", "nccl", 640, args.batch, 16, 4,
                        ("damoyolo-t", "damoyolo-s"), args.workers or cpus, 320,
                        tuple(m if m.startswith("damoyolo-") else f"damoyolo-{m.lower()}"
                              for m in args.models), 300, 50, 640, 4, 64)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return os.cpu_count() or 1


def _r(v, nd=3):
    """``v`` rounded; ``None`` for a missing or non-finite value (the report is plain JSON)."""
    import math
    return None if v is None or not math.isfinite(float(v)) else round(float(v), nd)


def _p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]


class Recorder:
    """The result of one step, rewritten atomically on every update (kept when killed)."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict = {}

    def update(self, **kw) -> None:
        self.data.update(kw)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, default=str))
        tmp.replace(self.path)


# ---------------------------------------------------------------------- shared helpers

def _sync(device: str) -> None:
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _scenes(n: int, size: int, seed: int = 0):
    """``n`` synthetic scenes (RGB uint8, size x size) and their preprocessed batch."""
    from damoyolo.data.synthetic import draw_image
    from damoyolo.preprocess import preprocess_batch
    imgs = [draw_image((seed, i), (size, size))[0] for i in range(n)]
    return imgs, preprocess_batch(imgs, (size, size))[0]


def calibrated_model(name: str, x, seed: int = 0):
    """A random preset whose outputs on ``x`` look like a trained model's (NMS has real work)."""
    from damoyolo.models.factory import calibrated_model as make
    return make(name, x, seed)


class Runtime:
    """Builds and runs what the step measures: TensorRT engines on a GPU; in a dry run the
    ONNX graph that TensorRT would be given (FP16: the float16 network of TensorRT 11),
    run by onnxruntime."""

    def __init__(self, s: Settings):
        self.s = s
        self.trt = None
        if not s.dry:
            from damoyolo.export.tensorrt import check_tensorrt
            self.trt = check_tensorrt()

    @property
    def name(self) -> str:
        return f"TensorRT {self.trt.__version__}" if self.trt else "onnxruntime (dry run)"

    def build(self, model, path: Path, precision: str, **kw):
        """(runner, build seconds); runner(images) -> list of output tensors (CPU)."""
        t0 = time.perf_counter()
        if self.trt:
            from damoyolo.export import export_tensorrt
            from damoyolo.infer.backends import TensorRTBackend
            p = export_tensorrt(model, path.with_suffix(".engine"), half=precision != "fp32",
                                int8=precision == "int8", **kw)
            return TensorRTBackend(p), time.perf_counter() - t0
        from damoyolo.export.onnx import export_onnx
        from damoyolo.infer.backends import OnnxRuntimeBackend
        calib = kw.pop("calib", None)
        p = export_onnx(model, path.with_suffix(".onnx"), half=precision == "fp16", **kw)
        if precision == "int8":
            p = _ort_int8(p, Path(calib), tuple(kw.get("imgsz") or model.input_size))
        return OnnxRuntimeBackend(p, threads=1), time.perf_counter() - t0

    def latency(self, runner, runs: int, warmup: int) -> dict:
        """Median / p90 ms per batch-1 inference, and the median of a full backend call."""
        import torch
        from damoyolo.infer.benchmark import time_fn
        h, w = runner.input_size
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 255
        call = time_fn(lambda: runner(x), max(3, runs // 5), 2)
        if not self.trt:
            ms = time_fn(lambda: runner(x), runs, warmup)
            kind = "onnxruntime session run, 1 thread (stand-in)"
        else:
            ms = _engine_gpu_ms(runner, x, runs, warmup)
            kind = "GPU compute per inference (CUDA events, own stream)"
        return {"median_ms": _r(statistics.median(ms)), "p90_ms": _r(_p90(ms)),
                "mean_ms": _r(statistics.fmean(ms)), "runs": runs, "timing": kind,
                "backend_call_median_ms": _r(statistics.median(call))}


def _engine_gpu_ms(backend, x, runs: int, warmup: int) -> list[float]:
    """trtexec-style GPU compute time of a :class:`TensorRTBackend` engine: device-resident
    input/outputs, ``execute_async_v3`` on a non-default stream between CUDA events."""
    import torch
    trt, ctx, eng, dev = backend.trt, backend.context, backend.engine, backend.device
    dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
              trt.int64: torch.int64, trt.bool: torch.bool}
    xd = x.to(dev, torch.float32).contiguous()
    ctx.set_input_shape("images", tuple(xd.shape))
    ctx.set_tensor_address("images", int(xd.data_ptr()))
    keep = []
    for name in backend.outputs:
        t = torch.empty(tuple(ctx.get_tensor_shape(name)), dtype=dtypes[eng.get_tensor_dtype(name)],
                        device=dev)
        ctx.set_tensor_address(name, int(t.data_ptr()))
        keep.append(t)
    stream = torch.cuda.Stream(device=dev)
    torch.cuda.synchronize(dev)
    out = []
    for i in range(warmup + runs):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record(stream)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        e1.record(stream)
        e1.synchronize()
        if i >= warmup:
            out.append(e0.elapsed_time(e1))
    del keep
    return out


def _write_calib_images(folder: Path, n: int, size: int) -> Path:
    import cv2
    from damoyolo.data.synthetic import draw_image
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = draw_image((99, i), (size, size))[0]
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), img[:, :, ::-1])
    return folder


def _ort_int8(path: Path, calib: Path, hw) -> Path:
    """Dry-run stand-in of INT8 calibration: onnxruntime static quantisation (QDQ, entropy
    calibration) over the calibration images, with damoyolo's preprocessing."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          quantize_static)
    from damoyolo.preprocess import preprocess_image, read_image
    files = sorted(calib.glob("*.jpg"))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(files)

        def get_next(self):
            f = next(self.it, None)
            if f is None:
                return None
            return {"images": preprocess_image(read_image(f), hw)[0][None].numpy()}

    out = path.with_name(path.stem + "_int8.onnx")
    quantize_static(str(path), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    calibrate_method=CalibrationMethod.Entropy)
    import onnx
    src, dst = onnx.load(str(path)), onnx.load(str(out))  # keep the damoyolo metadata
    del dst.metadata_props[:]
    dst.metadata_props.extend(src.metadata_props)
    onnx.save(dst, str(out))
    return out


def match_detections(ref, num, boxes, scores, labels, box_tol: float, score_tol: float) -> dict:
    """One image: torch :class:`Detections` against end-to-end outputs.  Equal when the counts
    agree and every torch detection pairs one to one with an end-to-end one of the same class
    and a box within ``box_tol`` px, scores within ``score_tol``."""
    import torch
    k = int(num)
    res = {"torch": len(ref), "engine": k}
    if k != len(ref):
        return res | {"equal": False, "why": "counts differ"}
    if k == 0:
        return res | {"equal": True, "box_err": 0.0, "score_err": 0.0}
    b, s, lab = boxes[:k].float(), scores[:k].float(), labels[:k].long()
    d = (ref.boxes[:, None, :].float() - b[None, :, :]).abs().amax(-1)
    d[ref.labels[:, None] != lab[None, :]] = float("inf")
    j = d.argmin(1)
    paired = j.unique().numel() == k and bool(torch.isfinite(d[torch.arange(k), j]).all())
    box_err = float(d[torch.arange(k), j].max())
    score_err = float((ref.scores.float() - s[j]).abs().max())
    eq = paired and box_err <= box_tol and score_err <= score_tol
    return res | {"equal": bool(eq), "paired": bool(paired), "box_err": _r(box_err, 4),
                  "score_err": _r(score_err, 6)}


def match_fraction(ref, num, boxes, labels, iou_min: float = 0.9) -> float:
    """Share of torch detections with an end-to-end detection of the same class at IoU >=
    ``iou_min`` (for reduced precision, where near-threshold detections may flip)."""
    from damoyolo.ops.boxes import box_iou
    k = int(num)
    if len(ref) == 0:
        return 1.0 if k == 0 else 0.0
    if k == 0:
        return 0.0
    iou = box_iou(ref.boxes.float(), boxes[:k].float())
    iou[ref.labels[:, None] != labels[:k].long()[None, :]] = 0
    return float((iou.amax(1) >= iou_min).float().mean())


# ---------------------------------------------------------------------- steps

def step_env(s: Settings, rec: Recorder, args) -> None:
    import torch
    import damoyolo
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "damoyolo": damoyolo.__version__, "cpus": _cpus(), "platform": platform.platform()}
    for mod in ("onnx", "onnxruntime"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
                    capability=f"{p.major}.{p.minor}", gpu_memory_gib=_r(p.total_memory / 2**30, 1),
                    cudnn=torch.backends.cudnn.version())
        try:
            v = torch.cuda.nccl.version()
            info["nccl"] = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
        except Exception as e:  # reported, not fatal: step c tells whether nccl works
            info["nccl"] = f"unknown ({type(e).__name__})"
    else:
        info["gpu"] = None
    rec.update(**info)
    trt = _probe_tensorrt()
    if trt is None and not s.dry and not args.no_install:
        major = (torch.version.cuda or "").split(".")[0]
        pkg = f"tensorrt-cu{major}" if major in ("12", "13") else "tensorrt"
        cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
               "--timeout", "15", "--retries", "1"]
        if args.trt_wheels:
            cmd += ["--no-index", "--find-links", args.trt_wheels]
        cmd.append(pkg)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.install_timeout)
            inst = {"command": " ".join(cmd[2:]), "rc": p.returncode,
                    "tail": (p.stdout + p.stderr)[-600:]}
        except subprocess.TimeoutExpired:
            inst = {"command": " ".join(cmd[2:]), "rc": None,
                    "tail": f"timed out after {args.install_timeout} s"}
        inst["seconds"] = _r(time.perf_counter() - t0, 1)
        trt = _probe_tensorrt()
        rec.update(tensorrt=trt, tensorrt_install=inst)
    else:
        rec.update(tensorrt=trt, tensorrt_install="not attempted (dry run)" if s.dry and trt is None
                   else "not needed" if trt else "not attempted (--no-install)")


def _probe_tensorrt() -> str | None:
    """TensorRT's version, imported in a fresh process (an install just made is seen)."""
    p = subprocess.run([sys.executable, "-c", "import tensorrt; print(tensorrt.__version__)"],
                       capture_output=True, text=True, timeout=120)
    return p.stdout.strip() if p.returncode == 0 else None


def _gpu_test_files() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if "pytest.mark.gpu" in p.read_text(errors="replace"))


def step_tests(s: Settings, rec: Recorder, args) -> None:
    files = _gpu_test_files()
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
           *files]
    rec.update(command="pytest -m gpu " + " ".join(files), files=files)
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    out = p.stdout + p.stderr
    counts = {k: 0 for k in ("passed", "failed", "skipped", "error", "deselected")}
    last = [ln for ln in out.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", ln)]
    for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)",
                           last[-1] if last else ""):
        counts["error" if k.startswith("error") else k] += int(n)
    reasons = sorted(set(re.findall(r"SKIPPED \[\d+\] [^:]+:\d+: (.*)", out)))
    rec.update(rc=p.returncode, **counts, skip_reasons=reasons, tail=out[-1500:])
    if p.returncode != 0:
        raise RuntimeError(f"pytest exited {p.returncode}")
    if not s.dry and counts["passed"] == 0:
        raise RuntimeError("no GPU test passed on a GPU machine (skipped: "
                           + "; ".join(reasons) + ")")


def step_ddp(s: Settings, rec: Recorder, args) -> None:
    res = Path(args.work) / "ddp_worker.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           str(Path(__file__).resolve()), "--ddp-worker", "--work", args.work,
           "--result", str(res)] + (["--dry-run"] if s.dry else [])
    rec.update(command="torchrun --standalone --nproc_per_node 1 benchmarks/gpu_check.py "
                       "--ddp-worker", backend=s.backend)
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    worker = json.loads(res.read_text()) if res.is_file() else {}
    rec.update(rc=p.returncode, **worker)
    if p.returncode != 0 or not worker.get("done"):
        rec.update(tail=(p.stdout + p.stderr)[-1500:])
        raise RuntimeError(f"torchrun exited {p.returncode}: {worker.get('error', '?')}")


def ddp_worker(args) -> None:
    """One torchrun rank: a few training iterations in a process group with SyncBN."""
    import math

    import torch
    import torch.distributed as dist
    from torch import nn

    from damoyolo.engine import distributed as du

    s = Settings.make(args)
    torch.set_num_threads(1 if s.dry else 4)
    rec = Recorder(Path(args.result))
    cuda = s.device == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # torchrun with one process sets WORLD_SIZE=1, where init_distributed joins no group:
    # create it here so that nccl (gloo in a dry run), DDP and SyncBN run
    dist.init_process_group(s.backend)
    rec.update(backend=dist.get_backend(), world=dist.get_world_size())
    from damoyolo.engine import Trainer
    ds, names = _dataset(Path(args.work) / "ddp_data", 8, s.ddp_size)
    import damoyolo
    from damoyolo.engine.api import train_config_for
    torch.manual_seed(0)
    model = damoyolo.build_model("damoyolo-t", class_names=names)
    model.cfg = dataclasses.replace(model.cfg, input_size=(s.ddp_size, s.ddp_size))
    cfg = dataclasses.replace(train_config_for("damoyolo-t"), epochs=2, batch_size=4,
                              nominal_batch=4, warmup_epochs=1, no_aug_epochs=1, workers=0,
                              output=str(Path(args.work) / "ddp_run"), eval_interval=0,
                              tensorboard=False, seed=0, device=s.device, sync_bn=True,
                              amp=_amp(s), precise_bn=0)
    tr = Trainer(model, ds, cfg, progress=False)
    rec.update(ddp_wrapped=isinstance(tr.ddp_model, nn.parallel.DistributedDataParallel),
               sync_bn_layers=sum(isinstance(m, nn.SyncBatchNorm) for m in tr.model.modules()),
               amp_dtype=str(tr.amp_dtype), device=str(tr.device))
    t0 = time.perf_counter()
    last = tr.fit()
    rec.update(iterations=cfg.epochs * tr.iters_per_epoch, seconds=_r(time.perf_counter() - t0, 2),
               loss=_r(last.get("loss"), 4), loss_finite=math.isfinite(last.get("loss", math.nan)),
               scaler_enabled=tr.scaler.is_enabled(), scale=_r(tr.scaler.get_scale()),
               checkpoint=(Path(cfg.output) / "last.pt").is_file())
    du.cleanup()
    d = rec.data
    bad = [k for k, ok in (("DDP-wrapped model", d["ddp_wrapped"]),
                           ("finite loss", d["loss_finite"]), ("last.pt written", d["checkpoint"]),
                           ("SyncBN layers", d["sync_bn_layers"] > 0 or not cuda),
                           ("GradScaler enabled", d["scaler_enabled"] or not cuda)) if not ok]
    if bad:
        raise RuntimeError("missing: " + ", ".join(bad))
    rec.update(done=True)


def _amp(s: Settings) -> bool:
    """AMP on the GPU (float16 autocast + GradScaler, what is checked).  Off in a dry run: on a
    CPU, AMP is a different path (bfloat16 autocast on AMX CPUs only, no scaler)."""
    return not s.dry


def _dataset(folder: Path, images: int, size: int, train: bool = True):
    """The real pipeline on a synthetic COCO dataset of ``images`` training images."""
    from damoyolo.data import DetectionDataset, load_dataset
    from damoyolo.data.synthetic import synthesize
    from damoyolo.presets import get_preset
    if not (folder / "annotations" / "train.json").is_file():
        synthesize(folder, images=images + 1, seed=0, size=size, val_fraction=1 / (images + 1),
                   workers=min(8, _cpus()))
    index = load_dataset(folder, split="train")
    ds = DetectionDataset(index, input_size=(size, size), train=train,
                          aug=get_preset("damoyolo-t").aug, seed=0)
    return ds, index.class_names


class _Stamped:
    """Iterates ``it`` recording the time each item is handed out."""

    def __init__(self, it, device: str):
        self.it, self.device, self.t = it, device, []

    def __len__(self):
        return len(self.it)

    def __iter__(self):
        for item in self.it:
            _sync(self.device)
            self.t.append(time.perf_counter())
            yield item

    def rate(self, batch: int, warm: int, end: float) -> float:
        """Images per second after ``warm`` items, up to ``end``."""
        n = len(self.t) - warm
        return batch * n / (end - self.t[warm]) if n > 0 and end > self.t[warm] else 0.0


def step_throughput(s: Settings, rec: Recorder, args) -> None:
    import torch

    import damoyolo
    from damoyolo.engine import Trainer
    from damoyolo.engine.api import train_config_for
    torch.set_num_threads(1 if s.dry else 4)
    if not s.dry:
        torch.backends.cudnn.benchmark = True
    b, n, w = s.train_batch, s.train_iters, s.train_warmup
    t0 = time.perf_counter()
    ds, names = _dataset(Path(args.work) / "train_data", b * (n + w), s.train_size)
    rec.update(input=s.train_size, batch=b, workers=s.workers, timed_iters=n, warmup_iters=w,
               dataset_images=len(ds), synth_s=_r(time.perf_counter() - t0, 1), models={})
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(b, 3, s.train_size, s.train_size, generator=g) * 255).to(s.device)
    targets = []
    for _ in range(b):
        xy = torch.rand(8, 2, generator=g) * (s.train_size * 0.8)
        wh = torch.rand(8, 2, generator=g) * (s.train_size * 0.3) + 8
        boxes = torch.cat([xy, (xy + wh).clamp(max=s.train_size)], 1)
        targets.append({"boxes": boxes.to(s.device),
                        "labels": torch.randint(0, len(names), (8,), generator=g).to(s.device)})
    models = {}
    for name in s.train_models:
        torch.manual_seed(0)
        model = damoyolo.build_model(name, class_names=names)
        model.cfg = dataclasses.replace(model.cfg, input_size=(s.train_size, s.train_size))
        cfg = dataclasses.replace(train_config_for(name), epochs=1, batch_size=b, nominal_batch=b,
                                  warmup_epochs=0, no_aug_epochs=0, workers=s.workers,
                                  output=str(Path(args.work) / f"run_{name}"), eval_interval=0,
                                  tensorboard=False, seed=0, device=s.device, amp=_amp(s),
                                  precise_bn=0)
        tr = Trainer(model, ds, cfg, progress=False)
        r = {"amp_dtype": str(tr.amp_dtype), "channels_last": tr.channels_last}
        # model-only: the trainer's step on one synthetic batch already on the device
        feed = _Stamped([(images, targets)] * (n + w), s.device)
        tr.train_one_epoch(0, feed)
        _sync(s.device)
        r["model_only_img_s"] = _r(feed.rate(b, w, time.perf_counter()), 2)
        if s.device == "cuda":
            r["max_memory_gib"] = _r(torch.cuda.max_memory_allocated() / 2**30, 2)
        # the loader alone, then the trainer fed by it (the real pipeline, strong augmentation)
        only = _Stamped(tr._loader(), "cpu")
        for _ in only:
            pass
        r["loader_only_img_s"] = _r(only.rate(b, w, time.perf_counter()), 2)
        fed = _Stamped(tr._loader(), s.device)
        tr.train_one_epoch(0, fed)
        _sync(s.device)
        r["loader_fed_img_s"] = _r(fed.rate(b, w, time.perf_counter()), 2)
        r["bound_by"] = ("data loader" if r["loader_only_img_s"] < r["model_only_img_s"]
                         else "model step")
        models[name] = r
        rec.update(models=models)
        del tr, model
        if s.device == "cuda":
            torch.cuda.empty_cache()


def step_trt_fp16(s: Settings, rec: Recorder, args) -> None:
    import torch

    import damoyolo
    try:
        rt, missing = Runtime(s), None
    except Exception as e:  # ExportError: no tensorrt / no GPU; the torch baseline still runs
        rt, missing = None, str(e)
    rows = {}
    rec.update(runtime=rt.name if rt else None, graph="raw_heads (benchmark mode: no decode, "
               "no NMS)", batch=1, precision="fp16", baseline=_TORCH_BASELINE[s.dry],
               paper="T4, TensorRT FP16, batch 1, without NMS", rows=rows)
    for name in s.trt_models:
        torch.manual_seed(0)
        m = damoyolo.build_model(name).eval()
        size = tuple(m.input_size if not s.dry else (s.parity_size, s.parity_size))
        row = {"input": list(size), "paper_t4_ms": PAPER_T4_MS.get(name),
               **_torch_latency(m, size, s)}
        if rt is not None:
            runner, build_s = rt.build(m, Path(args.work) / f"{name}_fp16", "fp16",
                                       mode="raw_heads", imgsz=size)
            row.update(build_s=_r(build_s, 1), **rt.latency(runner, s.lat_runs, s.lat_warmup))
            del runner
        rows[name] = row
        rec.update(rows=rows)
    if missing:
        rec.update(status="skipped", reason=f"{missing} (the torch baseline was measured)")
        raise _Skip(missing)


_TORCH_BASELINE = {False: "torch eager, float16, CUDA, channels_last, network only",
                   True: "torch eager, float32, CPU, channels_last, network only"}


def _torch_latency(model, size: tuple[int, int], s: Settings) -> dict:
    """Baseline in the same run: the re-parameterised network (no decode) in torch eager mode,
    batch 1 (float16 on the GPU), ms per forward pass with the device synchronised."""
    import torch

    from damoyolo.infer.backends import TorchBackend
    be = TorchBackend(model, device=s.device, half=not s.dry, imgsz=size)
    x = (torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)) * 255)
    x = x.to(s.device, be.dtype).contiguous(memory_format=torch.channels_last)
    ms = []
    with torch.no_grad():
        for i in range(s.lat_warmup + s.lat_runs):
            _sync(s.device)
            t0 = time.perf_counter()
            be.model(x)
            _sync(s.device)
            if i >= s.lat_warmup:
                ms.append((time.perf_counter() - t0) * 1e3)
    return {"torch_median_ms": _r(statistics.median(ms)), "torch_p90_ms": _r(_p90(ms))}


def _runtime_or_skip(s: Settings, rec: Recorder) -> Runtime:
    try:
        return Runtime(s)
    except Exception as e:  # ExportError: no tensorrt / no GPU
        rec.update(status="skipped", reason=str(e))
        raise _Skip(str(e)) from None


class _Skip(Exception):
    pass


def step_parity(s: Settings, rec: Recorder, args) -> None:
    import torch

    from damoyolo.postprocess import postprocess
    rt = _runtime_or_skip(s, rec)
    n, size = s.parity_images, s.parity_size
    _, x = _scenes(n, size)
    m = calibrated_model("damoyolo-t", x)
    conf, iou, max_det = m.cfg.head.conf_thresh, m.cfg.head.iou_thresh, 100
    ref_model = copy.deepcopy(m).reparameterize().to(s.device)
    if s.device == "cuda":  # the reference in true float32
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        sc, bx = ref_model.decode(ref_model(x.to(s.device)))
    ref = [d.to("cpu") for d in postprocess(sc, bx, conf, iou, max_det)]
    res = {"runtime": rt.name, "model": "damoyolo-t (calibrated random weights)",
           "images": n, "input": size, "torch_device": s.device, "conf": conf, "iou": iou,
           "max_det": max_det, "torch_detections": [len(d) for d in ref]}
    rec.update(**res)
    # float32 engine (TensorRT may use TF32 in it): torch's fp32 tolerances of the CPU suite
    for precision, box_tol, score_tol in (("fp32", 2.0, 5e-3), ("fp16", None, None)):
        runner, build_s = rt.build(m, Path(args.work) / f"e2e_{precision}", precision,
                                   mode="end2end", imgsz=(size, size), batch=n, max_det=max_det)
        num, boxes, scores, labels = runner(x)
        r = {"build_s": _r(build_s, 1), "engine_detections": [int(v) for v in num[:, 0]]}
        if box_tol is not None:
            per = [match_detections(ref[i], num[i, 0], boxes[i], scores[i], labels[i], box_tol,
                                    score_tol) for i in range(n)]
            r.update(equal=all(p["equal"] for p in per), per_image=per, box_tol=box_tol,
                     score_tol=score_tol)
        r["matched_iou90"] = _r(statistics.fmean(
            match_fraction(ref[i], num[i, 0], boxes[i], labels[i]) for i in range(n)), 4)
        rec.update(**{precision: r})
        del runner


def step_int8(s: Settings, rec: Recorder, args) -> None:
    import torch

    import damoyolo
    rt = _runtime_or_skip(s, rec)
    if rt.trt is not None and not hasattr(rt.trt.BuilderFlag, "INT8"):
        msg = f"TensorRT {rt.trt.__version__} has no implicit INT8 calibration (removed in 11)"
        rec.update(status="skipped", reason=msg)
        raise _Skip(msg)
    size = 640 if not s.dry else s.parity_size
    calib = _write_calib_images(Path(args.work) / "calib", s.calib_images, size)
    rows = {}
    rec.update(runtime=rt.name, calib_images=s.calib_images, calib="synthetic scenes",
               graph="raw_heads", rows=rows)
    for name in s.trt_models[:2]:
        torch.manual_seed(0)
        m = damoyolo.build_model(name).eval()
        runner, build_s = rt.build(m, Path(args.work) / f"{name}_int8", "int8", mode="raw_heads",
                                   imgsz=(size, size), calib=str(calib))
        rows[name] = {"input": [size, size], "build_s": _r(build_s, 1),
                      **rt.latency(runner, s.lat_runs, s.lat_warmup),
                      "paper_t4_ms_fp16": PAPER_T4_MS.get(name)}
        rec.update(rows=rows)
        del runner


STEP_FNS = {"env": step_env, "tests": step_tests, "ddp": step_ddp,
            "throughput": step_throughput, "trt_fp16": step_trt_fp16, "parity": step_parity,
            "int8": step_int8}


def child(args) -> int:
    s = Settings.make(args)
    import torch
    torch.set_num_threads(1 if s.dry else 4)
    rec = Recorder(Path(args.result))
    try:
        STEP_FNS[args.child](s, rec, args)
    except _Skip:
        return 0
    except Exception as e:
        rec.update(status="failed", error=f"{type(e).__name__}: {e}",
                   traceback=traceback.format_exc()[-2000:])
        return 1
    rec.update(status="ok")
    return 0


# ---------------------------------------------------------------------- orchestration

def _child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src")] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_step(name: str, timeout: float, args, work: Path) -> dict:
    result = work / f"{name}.json"
    result.unlink(missing_ok=True)
    log = work / f"{name}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--result",
           str(result), "--work", str(work), "--batch", str(args.batch),
           "--workers", str(args.workers), "--install-timeout", str(args.install_timeout),
           "--models", *args.models]
    if args.dry_run:
        cmd.append("--dry-run")
    if args.no_install:
        cmd.append("--no-install")
    if args.trt_wheels:
        cmd += ["--trt-wheels", args.trt_wheels]
    t0 = time.monotonic()
    with log.open("w") as fh:
        p = subprocess.Popen(cmd, cwd=ROOT, env=_child_env(), stdout=fh, stderr=subprocess.STDOUT,
                             start_new_session=True)
        killed = False
        try:
            p.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            killed = True
            _kill_group(p)
    res = {}
    if result.is_file():
        try:
            res = json.loads(result.read_text())
        except json.JSONDecodeError:
            res = {}
    if killed:
        res["status"] = "timeout"
        res["reason"] = f"killed after {timeout:.0f} s (budget); measured so far is kept"
    elif "status" not in res:
        res["status"] = "failed" if p.returncode else "ok"
    if p.returncode and res["status"] == "failed" or res["status"] == "timeout":
        res.setdefault("log_tail", log.read_text(errors="replace")[-1500:])
    res["wall_s"] = _r(time.monotonic() - t0, 1)
    return res


def _kill_group(p: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def orchestrate(args) -> dict:
    t_start = time.monotonic()
    deadline = t_start + args.budget_s
    selected = args.steps or [n for n, _ in STEPS]
    report = {"check": "damoyolo benchmarks/gpu_check.py",
              "mode": "dry-run (CPU stand-ins)" if args.dry_run else "gpu",
              "budget_s": args.budget_s,
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "steps": {}}
    with tempfile.TemporaryDirectory(prefix="damoyolo_gpu_check_") as td:
        work = Path(args.work or td)
        work.mkdir(parents=True, exist_ok=True)
        for name, title in STEPS:
            if name not in selected:
                report["steps"][name] = {"status": "not selected"}
                continue
            least, most = LIMITS[name][1 if args.dry_run else 0]
            left = deadline - time.monotonic() - RESERVE_S
            if left < least:
                report["steps"][name] = {
                    "status": "skipped",
                    "reason": f"budget spent ({max(left, 0):.0f} s left, the step needs {least} s)"}
            else:
                report["steps"][name] = run_step(name, min(most, left), args, work)
            report["elapsed_s"] = _r(time.monotonic() - t_start, 1)
            _write(report, args)
    return report


def _write(report: dict, args) -> None:
    if args.json:
        p = Path(args.json)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=1, default=str))
        tmp.replace(p)
    if args.md:
        Path(args.md).write_text(markdown(report))


def _fmt(v, nd=2) -> str:
    return "-" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def markdown(report: dict) -> str:
    """The report as markdown tables: the steps, then throughput and latency tables."""
    st = report["steps"]
    env = st.get("env", {})
    gpu = env.get("gpu") or "no GPU (CPU)"
    lines = [f"gpu_check, {report['mode']}: {gpu}; torch {env.get('torch', '?')} (CUDA "
             f"{env.get('torch_cuda') or '-'}), TensorRT {env.get('tensorrt') or 'not available'}; "
             f"{report.get('elapsed_s', 0)} s of a {report['budget_s']} s budget", "",
             "| step | status | result |", "|---|---|---|"]
    for name, title in STEPS:
        r = st.get(name, {"status": "not run"})
        lines.append(f"| {title} | {r['status']} | {_summary(name, r)} |")
    tp = st.get("throughput", {}).get("models") or {}
    if tp:
        t = st["throughput"]
        prec = {str(r.get("amp_dtype")) for r in tp.values()}
        prec = "AMP float16" if prec == {"torch.float16"} else "precision " + ", ".join(
            "float32" if p == "None" else p for p in sorted(prec))
        lines += ["", f"Training throughput, input {t['input']}, batch {t['batch']}, {prec}, "
                  f"{t['workers']} loader workers ({gpu}):", "",
                  "| model | model-only img/s | loader-only img/s | loader-fed img/s | bound by |",
                  "|---|---:|---:|---:|---|"]
        for m, r in tp.items():
            lines.append(f"| {m} | {_fmt(r.get('model_only_img_s'), 1)} | "
                         f"{_fmt(r.get('loader_only_img_s'), 1)} | "
                         f"{_fmt(r.get('loader_fed_img_s'), 1)} | {r.get('bound_by', '-')} |")
    for key, label in (("trt_fp16", "FP16"), ("int8", "INT8")):
        rows = st.get(key, {}).get("rows") or {}
        if rows:
            r0 = st[key]
            base = r0.get("baseline")
            lines += ["", f"{label} latency, batch 1, {r0['runtime'] or 'TensorRT missing'} on "
                      f"{gpu}" + (f"; baseline: {base}" if base else "") + "; paper: T4, "
                      "TensorRT FP16, batch 1, without NMS:", "",
                      "| model | input | median ms | p90 ms | backend call ms | paper T4 FP16 ms "
                      "| build s |" + (" torch median / p90 ms |" if base else ""),
                      "|---|---|---:|---:|---:|---:|---:|" + ("---:|" if base else "")]
            for m, r in rows.items():
                paper = r.get("paper_t4_ms", r.get("paper_t4_ms_fp16"))
                lines.append(f"| {m} | {r['input'][0]} | {_fmt(r.get('median_ms'))} | "
                             f"{_fmt(r.get('p90_ms'))} | {_fmt(r.get('backend_call_median_ms'))} | "
                             f"{_fmt(paper)} | {_fmt(r.get('build_s'), 1)} |"
                             + (f" {_fmt(r.get('torch_median_ms'))} / "
                                f"{_fmt(r.get('torch_p90_ms'))} |" if base else ""))
    return "\n".join(lines) + "\n"


def _summary(name: str, r: dict) -> str:
    if r["status"] in ("skipped", "not selected", "not run") or (r["status"] == "timeout"
                                                                 and len(r) <= 4):
        return r.get("reason", "").replace("|", "/")
    if r["status"] == "failed":
        return (r.get("error") or r.get("log_tail", "")[-200:]).replace("|", "/").replace("\n", " ")
    if name == "env":
        return (f"{r.get('gpu') or 'CPU'}, torch {r.get('torch')}, "
                f"CUDA {r.get('torch_cuda') or '-'}, "
                f"TensorRT {r.get('tensorrt') or 'missing'}")
    if name == "tests":
        return (f"{r.get('passed', 0)} passed, {r.get('skipped', 0)} skipped, "
                f"{r.get('failed', 0)} failed")
    if name == "ddp":
        return (f"{r.get('backend')}, world {r.get('world')}, DDP {r.get('ddp_wrapped')}, "
                f"{r.get('sync_bn_layers')} SyncBN layers, {r.get('iterations')} iterations, "
                f"loss {r.get('loss')}, autocast "
                f"{'off' if r.get('amp_dtype') == 'None' else r.get('amp_dtype')}")
    if name == "throughput":
        return "; ".join(f"{m}: bound by {v.get('bound_by', '?')}"
                         for m, v in (r.get("models") or {}).items())
    if name in ("trt_fp16", "int8"):
        return "; ".join(f"{m} {v.get('median_ms')} ms" for m, v in (r.get("rows") or {}).items())
    if name == "parity":
        out = []
        for p in ("fp32", "fp16"):
            if p in r:
                eq = r[p].get("equal")
                out.append(f"{p}: " + ("equal" if eq else "NOT equal" if eq is False else
                                       "compared") + f", {r[p].get('matched_iou90')} matched")
        return f"{r.get('runtime')}, {r.get('images')} images: " + "; ".join(out)
    return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--dry-run", action="store_true", help="CPU stand-ins at a tiny size")
    ap.add_argument("--budget-s", type=float, default=480.0, help="total seconds (default 480)")
    ap.add_argument("--steps", nargs="+", choices=[n for n, _ in STEPS], default=None)
    ap.add_argument("--json", default=None, help="write the report here (after every step)")
    ap.add_argument("--md", default=None, help="write the markdown tables here")
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--batch", type=int, default=32, help="training batch of step d (GPU)")
    ap.add_argument("--workers", type=int, default=0,
                    help="loader workers of step d (default: the usable cores)")
    ap.add_argument("--models", nargs="+", default=["t", "s", "m", "l"],
                    help="TensorRT models of step e (g: the first two)")
    ap.add_argument("--no-install", action="store_true", help="do not try to pip install tensorrt")
    ap.add_argument("--trt-wheels", default=None,
                    help="install tensorrt from the wheels in this folder")
    ap.add_argument("--install-timeout", type=int, default=120)
    ap.add_argument("--child", choices=list(STEP_FNS), help=argparse.SUPPRESS)
    ap.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.ddp_worker:
        try:
            ddp_worker(args)
        except Exception as e:
            Recorder(Path(args.result)).update(error=f"{type(e).__name__}: {e}",
                                               traceback=traceback.format_exc()[-2000:])
            raise
        return 0
    if args.child:
        return child(args)
    report = orchestrate(args)
    print(json.dumps(report, default=str))
    print()
    print(markdown(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
