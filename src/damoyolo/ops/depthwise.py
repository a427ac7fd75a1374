"""Depthwise convolution with a fast weight gradient on the CPU.

On the CPU, torch's (oneDNN's) kernel for the *weight* gradient of a depthwise convolution is
the slowest part of a nano model's training step: for damoyolo-ns at 256 px, batch 8, it takes
about ten times the convolution's forward pass (``benchmarks/depthwise.py``).  The weight
gradient of a depthwise convolution is a per-channel correlation of the input with the output
gradient, ``dW[c, i, j] = sum_{n, y, x} X[n, y*s+i-p, x*s+j-p, c] * G[n, y, x, c]``; with the
channels innermost (channels_last) it is a stream of vectorised multiply-adds over rows that
stay in the cache.  :class:`DepthwiseConv2d` computes it with a small numba kernel when

* the module is training, autograd is on and the weight needs a gradient,
* the tensors are float32 on the CPU, the convolution is depthwise (one filter per channel),
  5x5 or larger (oneDNN's 3x3 kernel is as fast), zero-padded, not dilated,
* numba is installed (``damoyolo[train]``) and the process is not tracing or exporting.

Under CPU autocast in training the convolution runs in float32 (its input is cast up): the
bfloat16 depthwise kernels of oneDNN are slower than float32 ones.  Everything else (forward
pass, input gradient, other devices and dtypes, eval mode, export) is torch's own ``conv2d``; the module has the parameters and state-dict keys of ``nn.Conv2d``.
The kernel sums in float32 in a fixed order for a given thread count, so a run is
deterministic; its result differs from oneDNN's by float rounding (~1e-6 relative).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import exporting

__all__ = ["DepthwiseConv2d", "depthwise_weight_grad", "fast_weight_grad_available"]

_lock = threading.Lock()
_kernel = None          # the compiled numba kernel, or False when numba is unavailable
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _load_kernel():
    """Compile (or load from numba's cache) the row-range kernel; ``False`` without numba."""
    global _kernel
    if _kernel is not None:
        return _kernel
    with _lock:
        if _kernel is not None:
            return _kernel
        if os.environ.get("DAMOYOLO_NO_NUMBA", "") not in ("", "0"):
            _kernel = False
            return _kernel
        try:
            import numba
        except ImportError:
            _kernel = False
            return _kernel

        @numba.njit(nogil=True, fastmath=True, cache=True)
        def rows_kernel(X, G, acc, k, s, p, row0, row1):  # pragma: no cover - compiled
            # X: (N, H, W, C) input, G: (N, Ho, Wo, C) output gradient, both C-contiguous;
            # acc: (k, k, C) float32 accumulator; rows [row0, row1) of the flattened (N, Ho)
            H = X.shape[1]
            W = X.shape[2]
            C = X.shape[3]
            Ho = G.shape[1]
            Wo = G.shape[2]
            for idx in range(row0, row1):
                n = idx // Ho
                y = idx - n * Ho
                for i in range(k):
                    r = y * s + i - p
                    if r < 0 or r >= H:
                        continue
                    for j in range(k):
                        x0 = 0
                        while x0 < Wo and x0 * s + j - p < 0:
                            x0 += 1
                        x1 = Wo
                        while x1 > x0 and (x1 - 1) * s + j - p >= W:
                            x1 -= 1
                        a = acc[i, j]
                        for x in range(x0, x1):
                            col = x * s + j - p
                            for c in range(C):
                                a[c] += X[n, r, col, c] * G[n, y, x, c]

        _kernel = rows_kernel
        return _kernel


def fast_weight_grad_available() -> bool:
    """Whether the numba weight-gradient kernel can be used in this process."""
    return bool(_load_kernel())


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="damoyolo-dw")
            _pool_size = workers
        return _pool


def _nhwc(t: Tensor) -> np.ndarray:
    """A (N, H, W, C) C-contiguous float32 numpy view of an NCHW-shaped tensor (copied only
    when it is not channels_last already)."""
    return t.detach().permute(0, 2, 3, 1).contiguous().numpy()


def depthwise_weight_grad(x: Tensor, grad_out: Tensor, kernel_size: int, stride: int,
                          padding: int, threads: int | None = None) -> Tensor:
    """The weight gradient ``(C, 1, k, k)`` of a depthwise ``conv2d(x, w, stride, padding,
    groups=C)`` given the output gradient; float32 CPU tensors, numba required."""
    kern = _load_kernel()
    if not kern:
        raise RuntimeError("the fast depthwise weight gradient needs numba "
                           "(pip install 'damoyolo[train]')")
    X = _nhwc(x)
    G = _nhwc(grad_out)
    n, ho = G.shape[0], G.shape[1]
    c = X.shape[3]
    rows = n * ho
    # one worker per ~4M multiply-adds: below that, handing work to a thread costs more
    macs = rows * G.shape[2] * c * kernel_size * kernel_size
    workers = max(1, min(threads or torch.get_num_threads(), rows, macs // 4_000_000))
    acc = np.zeros((workers, kernel_size, kernel_size, c), np.float32)
    if workers == 1:
        kern(X, G, acc[0], kernel_size, stride, padding, 0, rows)
    else:
        per = -(-rows // workers)
        futures = [_executor(workers).submit(kern, X, G, acc[w], kernel_size, stride, padding,
                                             w * per, min(rows, (w + 1) * per))
                   for w in range(workers)]
        for f in futures:
            f.result()
    total = acc.sum(axis=0) if workers > 1 else acc[0]
    return torch.from_numpy(np.ascontiguousarray(total.transpose(2, 0, 1))).unsqueeze(1)


class _DepthwiseConvFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, bias is not None)
        return F.conv2d(x, weight, bias, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, has_bias = ctx.conf
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [stride, stride], [padding, padding], [1, 1],
                False, [0, 0], weight.shape[0], [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            gw = depthwise_weight_grad(x, grad_out, weight.shape[-1], stride, padding)
        if has_bias and ctx.needs_input_grad[2]:
            gb = grad_out.sum((0, 2, 3))
        return gx, gw, gb, None, None


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` with ``groups == in_channels == out_channels`` whose weight gradient is
    computed by the numba kernel where it applies (see the module docstring)."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = False):
        super().__init__(channels, channels, kernel_size, stride, padding, groups=channels,
                         bias=bias)
        # square, zero-padded, undilated by construction; oneDNN's 3x3 kernel is as fast
        self._numba_sized = kernel_size >= 5

    def _fast_path(self, x: Tensor) -> bool:
        w = self.weight
        return (self._numba_sized and self.training and torch.is_grad_enabled()
                and w.requires_grad and x.device.type == "cpu" and w.device.type == "cpu"
                and x.dtype == torch.float32 and w.dtype == torch.float32 and x.dim() == 4
                and not torch.is_autocast_enabled("cpu") and not exporting()
                and fast_weight_grad_available())

    def forward(self, x: Tensor) -> Tensor:
        if (self.training and x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
                and torch.is_grad_enabled() and fast_weight_grad_available()):
            # under CPU autocast (bfloat16 training on AMX) the depthwise convolution stays
            # float32: oneDNN's bfloat16 depthwise kernels are slower than float32 here
            with torch.autocast("cpu", enabled=False):
                return self.forward(x.float())
        if self._fast_path(x):
            return _DepthwiseConvFn.apply(x, self.weight, self.bias, self.stride[0],
                                          self.padding[0])
        return super().forward(x)
