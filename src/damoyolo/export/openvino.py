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

from ..metadata import ExportMetadata, read_openvino_metadata, set_openvino_metadata
from .onnx import Exported, ExportError, to_onnx

__all__ = ["export_openvino", "to_openvino", "write_ir_pair", "read_openvino_metadata"]


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
    Returns the ``.xml`` path (:func:`to_openvino` also returns the metadata).
    """
    return to_openvino(model, path, half=half, **onnx_kwargs).path


def to_openvino(model: nn.Module, path: str | Path, half: bool = False, **onnx_kwargs
                ) -> Exported:
    """:func:`export_openvino`, returning the ``.xml`` path and the metadata it carries."""
    ov = _require_openvino()
    path = Path(path)
    if path.suffix != ".xml":
        path = path.with_suffix(".xml")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        onnx_path, meta = to_onnx(model, Path(td) / "model.onnx", **onnx_kwargs)
        ov_model = ov.convert_model(str(onnx_path))
    meta = meta.replace(openvino_weights="f16" if half else "f32")
    return Exported(path, write_ir_pair(ov, ov_model, path, meta, half))


def write_ir_pair(ov, ov_model, path: Path, meta: ExportMetadata, half: bool = False
                  ) -> ExportMetadata:
    """Save ``ov_model`` as ``path`` (.xml) + ``.bin`` with ``meta``, atomically as far as a
    pair allows: both are written under temporary names, the ``.bin``'s checksum goes into
    the metadata (``weights_sha256``, checked when the model is read), then the ``.bin`` and
    the ``.xml`` are renamed into place.  A kill leaves either the old pair, or a pair whose
    checksum does not match and which refuses to load.  Returns the metadata written."""
    from ..metadata import file_sha256
    from ..outputs import temporary_path
    tmp_xml = temporary_path(path)
    tmp_bin = tmp_xml.with_suffix(".bin")
    try:
        set_openvino_metadata(ov_model, meta.replace(weights_sha256=None))
        ov.save_model(ov_model, str(tmp_xml), compress_to_fp16=half)
        meta = meta.replace(weights_sha256=file_sha256(tmp_bin))
        set_openvino_metadata(ov_model, meta)  # the same weights again, now with their sum
        ov.save_model(ov_model, str(tmp_xml), compress_to_fp16=half)
        if file_sha256(tmp_bin) != meta.weights_sha256:
            raise ExportError(f"{path}: OpenVINO wrote different weights twice")
        tmp_bin.replace(path.with_suffix(".bin"))
        tmp_xml.replace(path)
    finally:
        tmp_xml.unlink(missing_ok=True)
        tmp_bin.unlink(missing_ok=True)
    return meta
