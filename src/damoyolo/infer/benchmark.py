"""Latency measurement of a backend, with and without post-processing."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .detector import Detector

__all__ = ["LatencyResult", "time_fn", "benchmark_detector", "open_bench_detector"]


@dataclass
class LatencyResult:
    """Latency figures in milliseconds per batch; throughput in images per second."""

    backend: str
    mode: str
    batch: int
    input_size: tuple[int, int]
    threads: int | None
    runs: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    throughput: float
    e2e_median_ms: float | None = None  # model + decode + NMS
    e2e_p90_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def time_fn(fn, runs: int, warmup: int) -> list[float]:
    """Call ``fn`` ``warmup`` times, then time ``runs`` calls; milliseconds per call."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]


def benchmark_detector(det: Detector, batch: int = 1, runs: int = 50, warmup: int = 10,
                       threads: int | None = None, postprocess: bool = True,
                       images: torch.Tensor | None = None) -> LatencyResult:
    """Time ``det``'s backend on a (batch, 3, H, W) input (random 0..255 unless given).

    Model-only latency times the backend call (pre-processed input, raw outputs); with
    ``postprocess`` the decode + NMS of :meth:`Detector.predict_batch` is timed as well.
    """
    h, w = det.input_size
    if images is None:
        g = torch.Generator().manual_seed(0)
        images = torch.rand((batch, 3, h, w), generator=g) * 255
    with torch.no_grad():
        ms = time_fn(lambda: det._forward(images), runs, warmup)
        med = statistics.median(ms)
        res = LatencyResult(det.backend.name, det.backend.mode, batch, (h, w), threads, runs,
                            med, _p90(ms), statistics.fmean(ms), batch * 1e3 / med)
        if postprocess:
            e2e = time_fn(lambda: det.predict_batch(images), runs, max(1, warmup // 2))
            res.e2e_median_ms, res.e2e_p90_ms = statistics.median(e2e), _p90(e2e)
    return res


def open_bench_detector(weights=None, model: str | None = None, backend: str | None = None,
                        imgsz: tuple[int, int] | None = None, batch: int = 1,
                        device: str = "cpu", half: bool = False, threads: int | None = None,
                        workdir: str | Path | None = None, trust_engine: bool = False):
    """The :class:`Detector` to benchmark, and the architecture to count (params, FLOPs).

    weights: a checkpoint or an export; model: a preset name (random weights) instead.  A
    checkpoint or preset on ``onnxruntime`` / ``openvino`` is exported on the fly into
    ``workdir`` (at ``imgsz``, static ``batch``); an export runs as it is (fixed input
    size) and its architecture is rebuilt from the preset named in its metadata.
    Returns ``(detector, model)``.
    """
    from ..checkpoint import load_model
    from ..models.factory import build_model
    from .backends import BackendError, backend_for_path

    net = None
    if model or backend_for_path(weights) == "torch":
        net = build_model(model) if model else load_model(weights)
        backend = backend or "torch"
        hw = imgsz or net.input_size
        if backend in ("onnxruntime", "openvino"):
            if workdir is None:
                raise BackendError(f"benchmarking a checkpoint on {backend} exports it: "
                                   "pass workdir=")
            from ..export import export_onnx, export_openvino
            if backend == "onnxruntime":
                weights = export_onnx(net, Path(workdir) / "m.onnx", imgsz=hw, batch=batch)
            else:
                weights = export_openvino(net, Path(workdir) / "m.xml", imgsz=hw, batch=batch)
        elif backend == "torch":
            weights = net
        else:
            raise BackendError("benchmark TensorRT from an engine file: damoyolo export "
                               "--format tensorrt, then bench --weights model.engine")
    elif imgsz is not None:
        raise BackendError(f"{weights}: an export has a fixed input size; --imgsz applies to "
                           "checkpoints")
    det = Detector(weights, backend=backend, device=device, half=half,
                   imgsz=imgsz if backend == "torch" else None, threads=threads,
                   batch_size=batch, trust_engine=trust_engine)
    if net is None:  # an export: the architecture named in its metadata
        meta = det.backend.meta
        net = build_model(meta["preset"], num_classes=len(meta["class_names"]))
    return det, net
