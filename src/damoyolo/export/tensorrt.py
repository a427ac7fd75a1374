"""TensorRT engine export (fp32 / fp16 / int8 with calibration), built from our ONNX export.

Needs the ``tensorrt`` Python package and a CUDA GPU; without them a clear
:class:`ExportError` is raised.  The end-to-end variant is built from the end-to-end ONNX
graph (standard ``NonMaxSuppression`` on xyxy boxes, ``center_point_box=0``), so the boxes
keep the same xyxy encoding as the raw outputs.  The damoyolo metadata is written beside
the engine as ``<engine>.json`` (engines cannot hold it).

Precision: TensorRT 10 builds ``half`` / ``int8`` from the float32 graph with its precision
flags.  TensorRT 11 removed those flags (networks are strongly typed): ``half`` then builds
from a graph whose network is float16 (:class:`~damoyolo.export.onnx.HalfNetwork`, decode
and NMS float32), and ``int8`` (implicit calibration, also removed) raises an
:class:`ExportError` that says so.

This path has not been run on a GPU by the test suite (no GPU in CI); it is exercised only
for its error messages.  ``benchmarks/gpu_check.py`` runs it on a GPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

from .._tensorrt import check_tensorrt as _check_tensorrt
from ..metadata import write_tensorrt_metadata
from .onnx import Exported, ExportError, to_onnx

__all__ = ["export_tensorrt", "to_tensorrt", "check_tensorrt"]


def check_tensorrt():
    """Import tensorrt and check that a CUDA GPU is visible; :class:`ExportError` otherwise."""
    return _check_tensorrt("TensorRT export", ExportError)


def _calibrator(trt, calib_dir: Path, input_hw: tuple[int, int], batch: int, cache: Path,
                limit: int = 512):
    """An entropy calibrator reading images of ``calib_dir`` with our preprocessing."""
    import torch

    from ..preprocess import IMAGE_SUFFIXES
    from ..preprocess import ImageReadError, preprocess_image, read_image

    files = sorted(p for p in calib_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise ExportError(f"{calib_dir}: no calibration images found")

    class Calib(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.i = 0
            self.buf = None  # the device batch, made when TensorRT asks for the first one

        def get_batch_size(self):
            return batch

        def get_batch(self, names):
            if self.i + batch > len(files):
                return None
            arrs = []
            for f in files[self.i:self.i + batch]:
                try:
                    arrs.append(preprocess_image(read_image(f), input_hw)[0])
                except ImageReadError:
                    arrs.append(torch.zeros(3, *input_hw))
            self.i += batch
            if self.buf is None:
                self.buf = torch.empty((batch, 3, *input_hw), device="cuda")
            self.buf.copy_(torch.stack(arrs))
            return [int(self.buf.data_ptr())]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data):
            from ..outputs import atomic_write_bytes  # a unique temporary, renamed over it
            atomic_write_bytes(cache, bytes(data))

    return Calib()


def export_tensorrt(model: nn.Module, path: str | Path, half: bool = True, int8: bool = False,
                    calib: str | Path | None = None, workspace_gb: float = 4.0,
                    **onnx_kwargs) -> Path:
    """Build a serialized TensorRT engine at ``path`` (+ ``path.json`` metadata); returns
    the engine's path (:func:`to_tensorrt` also returns the metadata)."""
    return to_tensorrt(model, path, half=half, int8=int8, calib=calib,
                       workspace_gb=workspace_gb, **onnx_kwargs).path


def to_tensorrt(model: nn.Module, path: str | Path, half: bool = True, int8: bool = False,
                calib: str | Path | None = None, workspace_gb: float = 4.0,
                **onnx_kwargs) -> Exported:
    """:func:`export_tensorrt`, returning the engine's path and the metadata beside it."""
    trt = check_tensorrt()
    if int8 and calib is None:
        raise ExportError("--int8 needs --calib DIR (a folder of representative images)")
    if onnx_kwargs.get("dynamic"):
        raise ExportError("dynamic batch is not supported for TensorRT engines; use --batch")
    weak = hasattr(trt.BuilderFlag, "FP16")  # TensorRT < 11: precision flags
    if int8 and not (weak and hasattr(trt, "IInt8EntropyCalibrator2")):
        raise ExportError(f"TensorRT {trt.__version__} has no implicit INT8 calibration (removed "
                          f"in TensorRT 11); build INT8 engines with tensorrt<11")
    path = Path(path)
    logger = trt.Logger(trt.Logger.WARNING)
    with tempfile.TemporaryDirectory() as td:
        onnx_path, meta = to_onnx(model, Path(td) / "model.onnx", half=half and not weak,
                                  **onnx_kwargs)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_path.read_bytes()):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ExportError(f"TensorRT could not parse the ONNX graph: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if half and weak:
        config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _calibrator(trt, Path(calib), meta.input_size,
                                             meta.batch or 1, path.with_suffix(".calib"))
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ExportError("TensorRT engine build failed (see the TensorRT log above)")
    from ..metadata import file_sha256
    from ..outputs import temporary_path
    meta = meta.replace(tensorrt_precision="int8" if int8 else ("fp16" if half else "fp32"))
    tmp = temporary_path(path)  # engine, then its metadata with the engine's checksum
    try:
        tmp.write_bytes(bytes(engine))
        meta = meta.replace(engine_sha256=file_sha256(tmp))
        write_tensorrt_metadata(path, meta)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return Exported(path, meta)
