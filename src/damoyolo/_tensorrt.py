"""The one check that TensorRT can run here, shared by the exporter and the runtime.

It lives outside :mod:`damoyolo.export` and :mod:`damoyolo.infer` so that running an engine
(``infer.backends.TensorRTBackend``) does not import exporter code, and the exporter
(``export.tensorrt``) does not import the runtime.
"""

from __future__ import annotations

from types import ModuleType

from .errors import DamoyoloError

__all__ = ["check_tensorrt"]


def check_tensorrt(purpose: str, error: type[DamoyoloError]) -> ModuleType:
    """Import ``tensorrt`` and check that torch sees a CUDA GPU.

    purpose: what needs TensorRT, the start of the message (``"TensorRT export"``);
    error: the caller's error class, raised with a one-line message when either is missing.
    Returns the ``tensorrt`` module.
    """
    try:
        import tensorrt as trt
    except ImportError:
        raise error(f"{purpose} needs the tensorrt package and an NVIDIA GPU "
                    "(pip install tensorrt); neither is installed here") from None
    import torch
    if not torch.cuda.is_available():
        raise error(f"{purpose} needs a CUDA GPU; torch sees none")
    return trt
