"""Latency measurement of a backend, with and without post-processing.

This times a given :class:`Detector`; benchmarking a checkpoint or preset on an export
backend (exported on the fly) is :func:`damoyolo.workflows.bench.open_bench_detector`.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch

from .detector import Detector
from .._moved import moved

__all__ = ["LatencyResult", "time_fn", "benchmark_detector"]


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


# Deprecated: one release only.  open_bench_detector exports on the fly, so it lives in
# damoyolo.workflows.bench; the old name imports from there with a DeprecationWarning.  The
# module is named as a string (importlib) so that this shim is not an import from the infer
# floor up to workflows; nothing else in the package may do this.
_MOVED = {"open_bench_detector": "damoyolo.workflows.bench"}


__getattr__ = moved(__name__, _MOVED)
