"""Tensor operations of the models: box ops, NMS, the depthwise convolution's fast weight
gradient, and :func:`exporting`, the check that keeps CPU-only eager fast paths out of
captured graphs."""

from __future__ import annotations

import torch

__all__ = ["exporting", "nchw_on_cpu_eager"]


def exporting() -> bool:
    """Whether the module runs under TorchScript, tracing, torch.compile or ONNX export, where
    the CPU-only eager fast paths (the depthwise weight gradient, the SPP's channels_last
    pooling, the backbone's channels_last stem) must keep out of the graph."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and getattr(compiler, "is_compiling", lambda: False)():
        return True
    onnx = getattr(torch, "onnx", None)
    return bool(onnx is not None and getattr(onnx, "is_in_onnx_export", lambda: False)())


def nchw_on_cpu_eager(x: torch.Tensor) -> bool:
    """Whether ``x`` is a 4-d CPU map not in channels_last, outside graph capture: where the
    eager channels_last fast paths (the SPP's pooling, the backbone's stem) convert it."""
    return (x.device.type == "cpu" and x.dim() == 4 and not exporting()
            and not x.is_contiguous(memory_format=torch.channels_last))
