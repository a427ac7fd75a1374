"""Latency predictors for MAE-NAS budgets.

A predictor maps a search-form structure to seconds per image.  Two kinds, both summing
per-convolution latencies over :func:`damoyolo.nas.cost.conv_ops` and caching every convolution
shape, so a search pays for each distinct shape once:

* :class:`TablePredictor` reads a per-convolution lookup table in the official MAE-NAS format
  (one row per convolution, ``{Regular,B,C_in,H,W,C_out,k,s,elmtFused} milliseconds`` for a batch
  of ``B`` images) and interpolates it as the official predictor does: rows are grouped by
  ``int(C_in / C_out * 100) / 100``; inside a group, piecewise-linear interpolation over the
  Delaunay triangulation of ``(C_out, H)`` with a nearest-neighbour fallback (coordinates
  rescaled) outside the hull; across groups, 1-D linear interpolation / extrapolation over the
  ratio through the groups whose predictions increase with the ratio.  The sum is divided by the
  batch and by 1000 (seconds per image).
* :class:`MeasuredPredictor` times each convolution (+ BatchNorm folded away, + the fused
  residual add when ``elmtFused``) with torch on this machine.  :func:`profile_table` writes such
  timings as a table that :class:`TablePredictor` reads, for a user's own device.

Tables are read with a clear error naming the file and line of a bad row.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..models.backbones.structure import BlockSpec
from .cost import ConvOp, conv_ops
from ..errors import DamoyoloError

__all__ = ["TableError", "TablePredictor", "MeasuredPredictor", "profile_table",
           "format_row", "parse_row"]


class TableError(DamoyoloError, ValueError):
    """A latency table could not be read or does not cover a convolution."""


def format_row(op: ConvOp, batch: int, ms: float) -> str:
    """One table row for ``op`` timed at ``ms`` milliseconds per batch of ``batch`` images."""
    return (f"{{Regular,{batch},{op.in_channels},{op.resolution},{op.resolution},"
            f"{op.out_channels},{op.kernel},{op.stride},{op.elmt_fused}}} {ms:.6g}")


def parse_row(line: str, where: str) -> tuple[str, int, int, int, int, int, float]:
    """Parse one row -> (key 'Regular s elmt k', batch, C_in, C_out, H, unused W, ms)."""
    try:
        spec, ms = line.split()
        fields = spec.strip().lstrip("{").rstrip("}").split(",")
        conv_type, batch, cin, h, w, cout, k, s, elmt = fields
        row = (f"{conv_type} {int(s)} {int(elmt)} {int(k)}", int(batch), int(cin), int(cout),
               int(h), int(w), float(ms))
    except ValueError:
        raise TableError(f"{where}: expected '{{Regular,B,C_in,H,W,C_out,k,s,elmtFused}} ms', "
                         f"got {line.strip()!r}") from None
    if not math.isfinite(row[-1]) or row[-1] < 0:  # a NaN row would pass every budget check
        raise TableError(f"{where}: latency {row[-1]} ms is not a finite non-negative number")
    return row


class _Group:
    """Rows of one (key, batch, ratio) group: (C_out, H) -> ms, with lazy interpolators."""

    def __init__(self):
        self.points: list[tuple[int, int]] = []
        self.values: list[float] = []
        self._linear = self._nearest = None

    def _build(self):
        try:
            from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator
        except ImportError:
            raise TableError("table latency prediction needs scipy: "
                             "pip install 'damoyolo[nas]'") from None
        pts = np.asarray(self.points, dtype=np.float64)
        vals = np.asarray(self.values, dtype=np.float64)
        try:
            self._linear = LinearNDInterpolator(pts, vals)
        except Exception:  # too few / collinear points: no triangulation, nearest only
            self._linear = False
        self._nearest = NearestNDInterpolator(pts, vals, rescale=True)

    def __call__(self, cout: int, h: int) -> float:
        if self._nearest is None:
            self._build()
        lat = float("nan")
        if self._linear is not False:
            lat = float(self._linear([cout], [h])[0])
        if math.isnan(lat) or lat < 0:
            lat = float(self._nearest([(cout, h)])[0])
        return lat


def _interp1d_extrapolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear interpolation through sorted ``xs``, extended linearly beyond the ends."""
    n = len(xs)
    if n == 1:
        return float(ys[0])
    hi = int(np.searchsorted(np.asarray(xs), x))
    hi = min(max(hi, 1), n - 1)
    lo = hi - 1
    slope = (ys[hi] - ys[lo]) / (xs[hi] - xs[lo])
    return float(slope * (x - xs[lo]) + ys[lo])


class _PerConvPredictor:
    """A structure's latency = sum of its convolutions' ``conv_ms`` (for a batch of
    ``self.batch`` at ``self.resolution``), in seconds per image."""

    def __call__(self, blocks: Sequence[BlockSpec]) -> float:
        total = 0.0
        for op in conv_ops(blocks, self.resolution):
            total += self.conv_ms(op)
        return total / self.batch / 1000.0


class TablePredictor(_PerConvPredictor):
    """Latency from a per-convolution lookup table (official MAE-NAS format and interpolation).

    path: the table; resolution: search-form input size (320 for 640 images); batch: the batch
    the table was measured at (default: the table's only batch, or the largest one).
    Calling it on a structure returns predicted seconds per image.
    """

    def __init__(self, path: str | Path, resolution: int = 320, batch: int | None = None):
        self.path = Path(path)
        self.resolution = int(resolution)
        if not self.path.is_file():
            raise TableError(f"latency table {self.path} does not exist")
        # key -> batch -> ratio -> group
        self.groups: dict[str, dict[int, dict[float, _Group]]] = {}
        for lineno, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            key, b, cin, cout, h, _w, ms = parse_row(line, f"{self.path}:{lineno}")
            if h == 4 or ms < 0 or not key.startswith("Regular"):
                continue  # the official reader drops 4x4 maps and failed profiles
            if cout <= 0:
                raise TableError(f"{self.path}:{lineno}: C_out must be positive")
            ratio = 0.0 if cin == 3 else int(cin / cout * 100) / 100
            grp = self.groups.setdefault(key, {}).setdefault(b, {}).setdefault(ratio, _Group())
            grp.points.append((cout, h))
            grp.values.append(ms)
        if not self.groups:
            raise TableError(f"latency table {self.path} has no usable 'Regular' rows")
        batches = sorted({b for per_key in self.groups.values() for b in per_key})
        self.batch = int(batch) if batch is not None else batches[-1]
        self.cache: dict[ConvOp, float] = {}

    def _for_ratio(self, groups: dict[float, _Group], op: ConvOp) -> float:
        if op.in_channels == 3 and 0.0 in groups:
            return groups[0.0](op.out_channels, op.resolution)
        pred_ratio = op.in_channels / op.out_channels
        if pred_ratio in groups:
            return groups[pred_ratio](op.out_channels, op.resolution)
        ratios, values = [], []
        for r in sorted(groups):
            if r == 0:
                continue
            v = groups[r](op.out_channels, op.resolution)
            if len(ratios) < 2 or v > values[-1]:
                ratios.append(r)
                values.append(v)
        if not ratios:
            raise TableError(f"{self.path}: no rows usable for {op}")
        lat = _interp1d_extrapolate(ratios, values, pred_ratio)
        if lat < 0:
            lat = pred_ratio / ratios[0] * values[0]
        return lat

    def conv_ms(self, op: ConvOp) -> float:
        """Predicted milliseconds for one batch of ``self.batch`` images through ``op``."""
        hit = self.cache.get(op)
        if hit is not None:
            return hit
        key = f"Regular {op.stride} {op.elmt_fused} {op.kernel}"
        per_batch = self.groups.get(key)
        if per_batch is None:
            raise TableError(f"latency table {self.path} has no rows for '{key}' "
                             f"(stride {op.stride}, elmtFused {op.elmt_fused}, kernel {op.kernel})")
        if self.batch in per_batch:
            lat = self._for_ratio(per_batch[self.batch], op)
        else:
            bs = sorted(per_batch)
            lat = _interp1d_extrapolate(bs, [self._for_ratio(per_batch[b], op) for b in bs],
                                        self.batch)
        if not lat >= 0:
            raise TableError(f"latency table {self.path}: negative prediction for {op}")
        self.cache[op] = lat
        return lat



class MeasuredPredictor(_PerConvPredictor):
    """Latency measured on this machine: each distinct convolution shape is timed once with
    torch (conv + fused residual add when ``elmt_fused``), then summed per structure.

    resolution: search-form input size; batch: images per timed call; device: torch device
    string ("cpu", "cuda"); repeats / warmup: timed and untimed calls per shape (median kept);
    threads: torch CPU threads while timing (``None``: leave torch's setting).
    Returns seconds per image.  Timings are only as good as the machine is quiet.
    """

    def __init__(self, resolution: int = 320, batch: int = 1, device: str = "cpu",
                 repeats: int = 5, warmup: int = 2, timer: Callable[[ConvOp], float] | None = None,
                 threads: int | None = None):
        self.threads = threads
        self.resolution = int(resolution)
        self.batch = int(batch)
        self.device = device
        self.repeats = int(repeats)
        self.warmup = int(warmup)
        self.cache: dict[ConvOp, float] = {}
        self._timer = timer or self._time_torch

    def _time_torch(self, op: ConvOp) -> float:
        import torch
        import torch.nn.functional as F

        dev = torch.device(self.device)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(self.batch, op.in_channels, op.resolution, op.resolution, generator=gen).to(dev)
        w = torch.randn(op.out_channels, op.in_channels, op.kernel, op.kernel, generator=gen).to(dev)
        b = torch.zeros(op.out_channels, device=dev)
        res = torch.randn(self.batch, op.out_channels, op.out_resolution, op.out_resolution,
                          generator=gen).to(dev) if op.elmt_fused else None
        pad = (op.kernel - 1) // 2
        before = torch.get_num_threads()
        if self.threads is not None and before != self.threads:
            torch.set_num_threads(int(self.threads))
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        times = []
        try:
            with torch.inference_mode():
                for i in range(self.warmup + self.repeats):
                    sync()
                    t0 = time.perf_counter()
                    y = F.conv2d(x, w, b, stride=op.stride, padding=pad)
                    if res is not None:
                        y = y + res
                    y = torch.relu(y)
                    sync()
                    if i >= self.warmup:
                        times.append(time.perf_counter() - t0)
        finally:  # the caller's thread setting is left as it was
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)
        return float(np.median(times)) * 1000.0

    def fresh(self) -> "MeasuredPredictor":
        """A predictor with the same settings and an empty cache (independent timings)."""
        return MeasuredPredictor(self.resolution, self.batch, self.device, self.repeats,
                                 self.warmup, None if self._timer == self._time_torch
                                 else self._timer, self.threads)

    def conv_ms(self, op: ConvOp) -> float:
        """Measured milliseconds for a batch of ``self.batch`` images through ``op``."""
        hit = self.cache.get(op)
        if hit is None:
            hit = self.cache[op] = float(self._timer(op))
        return hit



def profile_table(out: str | Path, channels: Iterable[int], resolutions: Iterable[int],
                  kernels: Iterable[int] = (1, 3), strides: Iterable[int] = (1, 2),
                  predictor: MeasuredPredictor | None = None,
                  progress: Callable[[int, int], None] | None = None) -> int:
    """Time every convolution of the grid (C_in x C_out over ``channels``, every resolution,
    kernel, stride and elmtFused 0/1) with ``predictor`` and write the table to ``out``
    atomically.  Returns the number of rows."""
    predictor = predictor or MeasuredPredictor()
    channels, resolutions = sorted(set(channels)), sorted(set(resolutions), reverse=True)
    grid = [ConvOp(ci, co, k, s, h, e) for h in resolutions for k in kernels for s in strides
            for e in (0, 1) for ci in channels for co in channels]
    rows = []
    for i, op in enumerate(grid):
        rows.append(format_row(op, predictor.batch, predictor.conv_ms(op)))
        if progress:
            progress(i + 1, len(grid))
    from ..outputs import atomic_write_text
    atomic_write_text(out, "\n".join(rows) + "\n")
    return len(rows)
