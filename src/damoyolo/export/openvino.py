"""OpenVINO IR export (``.xml`` + ``.bin``), converted from our ONNX export.

The damoyolo metadata (:mod:`damoyolo.metadata`) is stored in the
IR's runtime info under the key ``damoyolo`` as a JSON string.  ``half=True`` stores the
weights in fp16 (OpenVINO computes in the device's inference precision either way; on
CPUs with bf16 support the default hint is bf16, so pass
``INFERENCE_PRECISION_HINT=f32`` when comparing numbers with torch).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

from ..metadata import read_metadata, read_openvino_metadata, set_openvino_metadata
from .onnx import ExportError, export_onnx

__all__ = ["export_openvino", "read_openvino_metadata"]


def _require_openvino():
    try:
        import openvino
    except ImportError:
        raise ExportError("OpenVINO export needs the optional package openvino "
                          "(pip install 'damoyolo[export]')") from None
    return openvino


def export_openvino(model: nn.Module, path: str | Path, half: bool = False, **onnx_kwargs
                    ) -> Path:
    """Export to OpenVINO IR; ``path`` is the ``.xml`` file (``.bin`` written beside it).

    onnx_kwargs: forwarded to :func:`export_onnx` (imgsz, mode, dynamic, max_det, ...).
    """
    ov = _require_openvino()
    path = Path(path)
    if path.suffix != ".xml":
        path = path.with_suffix(".xml")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        onnx_path = export_onnx(model, Path(td) / "model.onnx", **onnx_kwargs)
        meta = read_metadata(onnx_path)
        ov_model = ov.convert_model(str(onnx_path))
    meta["openvino_weights"] = "f16" if half else "f32"
    set_openvino_metadata(ov_model, meta)
    ov.save_model(ov_model, str(path), compress_to_fp16=half)
    return path
