"""Export to deployment formats; always from the re-parameterised model.

- :func:`export_onnx` (``onnx.py``): raw decoded outputs, official-style per-level heads, or
  end-to-end with the standard ONNX ``NonMaxSuppression`` inside the graph.
- :func:`export_openvino` (``openvino.py``): OpenVINO IR (fp32 or fp16 weights).
- :func:`export_tensorrt` (``tensorrt.py``): TensorRT engine (fp16 / int8), needs tensorrt + GPU.
"""

from .onnx import MODES, ExportError, export_metadata, export_onnx, read_metadata
from .openvino import export_openvino
from .tensorrt import export_tensorrt

__all__ = ["MODES", "ExportError", "export_metadata", "export_onnx", "read_metadata",
           "export_openvino", "export_tensorrt"]
