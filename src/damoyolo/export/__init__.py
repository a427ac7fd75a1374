"""Export to deployment formats; always from the re-parameterised model.

- :func:`export_onnx` (``onnx.py``): raw decoded outputs, official-style per-level heads, or
  end-to-end with the standard ONNX ``NonMaxSuppression`` inside the graph.
- :func:`export_openvino` (``openvino.py``): OpenVINO IR (fp32 or fp16 weights).
- :func:`export_tensorrt` (``tensorrt.py``): TensorRT engine (fp16 / int8), needs tensorrt + GPU.
- :func:`to_onnx`, :func:`to_openvino`, :func:`to_tensorrt`: the same exports, returning the
  written path with the :class:`~damoyolo.metadata.ExportMetadata` it carries (:class:`Exported`).
- ``quantize.py`` / ``int8_graph.py``: INT8 graph work (calibration, float head, blocks,
  quantizers); the INT8 export a user runs is :func:`damoyolo.workflows.int8.export_int8`.
"""


from .onnx import MODES, Exported, ExportError, export_metadata, export_onnx, read_metadata, \
    to_onnx
from .openvino import export_openvino, to_openvino
from .tensorrt import export_tensorrt, to_tensorrt
from .._moved import moved

__all__ = ["MODES", "ExportError", "Exported", "export_metadata", "export_onnx", "read_metadata",
           "export_openvino", "export_tensorrt", "to_onnx", "to_openvino", "to_tensorrt"]

# Deprecated: one release only.  The INT8 export composes export with eval and infer, so it
# lives in damoyolo.workflows.int8; these names import from there with a DeprecationWarning.
# The module is named as a string (importlib) so that this shim is not an import from the
# export floor up to workflows; nothing else in the package may do this.
_MOVED = {"export_int8": "damoyolo.workflows.int8", "Int8Result": "damoyolo.workflows.int8"}


__getattr__ = moved(__name__, _MOVED)
