"""Inference backends: one small class per runtime, same interface.

Every backend takes a preprocessed batch ``images`` float32 (B, 3, H, W) RGB in [0, 255]
(a torch tensor) and returns its graph outputs as torch tensors on the CPU (torch: on the
model's device), in the order named by ``backend.outputs``:

- mode ``raw``: ``scores`` (B, A, C), ``boxes`` (B, A, 4) xyxy input pixels;
- mode ``raw_heads``: ``cls_s8, cls_s16, cls_s32, reg_s8, reg_s16, reg_s32``;
- mode ``end2end``: ``num_dets, det_boxes, det_scores, det_labels``.

``backend.meta`` is the export metadata, an :class:`~damoyolo.metadata.ExportMetadata`:
class names, input size, mode, thresholds, the model's config.  ``backend.batch`` is the
fixed batch size of a static graph, or ``None`` when any batch size is accepted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from ..errors import DamoyoloError, MissingFileError
from ..metadata import ExportMetadata, MetadataError
from ..runtime.cpu import usable_cpus
from ..runtime.threads import set_torch_threads

__all__ = ["BackendError", "Backend", "TorchBackend", "OnnxRuntimeBackend", "OpenVINOBackend",
           "TensorRTBackend", "BACKENDS", "SUFFIXES", "open_backend", "backend_for_path",
           "is_export", "default_threads"]


class BackendError(DamoyoloError, RuntimeError):
    """A backend could not be opened (missing package, wrong file, no device)."""


class Backend:
    """Common interface (see the module docstring)."""

    name = "base"
    meta: ExportMetadata
    batch: int | None = None

    @property
    def mode(self) -> str:
        return self.meta.mode

    @property
    def outputs(self) -> list[str]:
        if self.meta.outputs is None:
            raise MetadataError("damoyolo metadata lacks 'outputs'; export the model again")
        return list(self.meta.outputs)

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.meta.input_size)

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.class_names)

    def __call__(self, images: Tensor) -> list[Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


class TorchBackend(Backend):
    """A :class:`damoyolo.DAMOYOLO` (re-parameterised, eval mode) on ``device``, in the
    channels_last memory format (on a 2-core Xeon, batch 1: 0.56x the NCHW time for Ns at
    416, 0.71x for T at 640, 0.77x for S; docs/benchmarks/latency.md)."""

    name = "torch"

    def __init__(self, weights, device: str = "cpu", half: bool = False,
                 model: str | None = None, imgsz: tuple[int, int] | None = None):
        from ..checkpoint import load_model
        from ..metadata import export_metadata
        from ..models.detector import DAMOYOLO

        if isinstance(weights, DAMOYOLO):
            net = weights
        else:
            net = load_model(weights, model=model)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError("device cuda requested but torch sees no CUDA GPU")
        if half and self.device.type == "cpu":
            raise BackendError("--half needs a CUDA device (fp16 convolutions are slow or "
                               "unsupported on CPU)")
        import copy
        self.model = copy.deepcopy(net).eval().reparameterize().to(self.device)
        self.dtype = torch.float16 if half else torch.float32
        if half:
            self.model.half()
        self.model = self.model.to(memory_format=torch.channels_last)
        hw = tuple(imgsz or net.input_size)
        self.meta = export_metadata(net, hw, "raw", outputs=["scores", "boxes"])

    @torch.no_grad()
    def __call__(self, images: Tensor) -> list[Tensor]:
        x = images.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        out = self.model(x)
        scores, boxes = self.model.decode(out)
        return [scores.float(), boxes.float()]


SAFE_ONNXRUNTIME = (1, 27)


def check_safe_onnxruntime(version: str) -> None:
    """Refuse an onnxruntime that follows external-data references out of a model's folder.

    Measured on the releases: up to 1.23 every such reference is read (a relative ``..``
    path, an absolute path, a symbolic link); 1.24 refuses them in dense initializers, 1.24.3
    also for a model given as bytes, and 1.27 also in sparse initializers.  damoyolo refuses
    ONNX files with external data before any runtime sees them; this is the second wall.
    """
    import re
    m = re.match(r"(\d+)\.(\d+)", str(version))
    if m and (int(m.group(1)), int(m.group(2))) < SAFE_ONNXRUNTIME:
        raise BackendError(f"onnxruntime {version} can read files outside a model's folder "
                           f"through external-data references in a crafted model; install "
                           f"onnxruntime >= {'.'.join(map(str, SAFE_ONNXRUNTIME))}")


class OnnxRuntimeBackend(Backend):
    """An exported ``.onnx`` file run by onnxruntime (CPU, or CUDA when installed)."""

    name = "onnxruntime"

    def __init__(self, path, device: str = "cpu", threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError("the onnxruntime backend needs the optional package onnxruntime "
                               "(pip install 'damoyolo[export]')") from None
        from ..metadata import read_metadata

        check_safe_onnxruntime(ort.__version__)
        self.meta = read_metadata(path)
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError("device cuda requested but this onnxruntime has no CUDA "
                                   "provider (pip install onnxruntime-gpu)")
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), so, providers=providers)
        dim0 = self.session.get_inputs()[0].shape[0]
        self.batch = dim0 if isinstance(dim0, int) else None
        self.names = [o.name for o in self.session.get_outputs()]

    def __call__(self, images: Tensor) -> list[Tensor]:
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return [torch.from_numpy(np.asarray(o)) for o in self.session.run(self.names,
                                                                          {"images": x})]


class OpenVINOBackend(Backend):
    """An OpenVINO IR (``.xml``) or ``.onnx`` file compiled by OpenVINO.

    precision: the inference precision hint; ``"f32"`` by default because recent CPUs
    otherwise run in bf16 (noticeably different scores); ``None`` keeps the device default.
    """

    name = "openvino"

    def __init__(self, path, device: str = "cpu", threads: int | None = None,
                 precision: str | None = "f32"):
        try:
            import openvino as ov
        except ImportError:
            raise BackendError("the openvino backend needs the optional package openvino "
                               "(pip install 'damoyolo[export]')") from None
        from ..metadata import read_metadata, read_openvino_metadata

        core = ov.Core()
        onnx_file = str(path).lower().endswith(".onnx")
        if onnx_file:  # checked (external data refused) before OpenVINO reads anything
            self.meta = read_metadata(path)
        model = core.read_model(str(path))
        if not onnx_file:
            self.meta = read_openvino_metadata(model, path)
        dev = "CPU" if str(device).lower() == "cpu" else str(device).upper()
        cfg = {}
        if precision:
            cfg["INFERENCE_PRECISION_HINT"] = precision
        if threads:
            cfg["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, dev, cfg)
        pshape = model.inputs[0].get_partial_shape()
        self.batch = pshape[0].get_length() if pshape[0].is_static else None
        self.request = self.compiled.create_infer_request()
        self.ports = list(self.compiled.outputs)

    def __call__(self, images: Tensor) -> list[Tensor]:
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        res = self.request.infer({0: x})
        return [torch.from_numpy(np.array(res[p])) for p in self.ports]


class TensorRTBackend(Backend):
    """A serialized TensorRT engine (``.engine``) with its ``.engine.json`` metadata.

    Needs tensorrt (10.x API) and a CUDA GPU; not exercised by the CPU test suite.
    """

    name = "tensorrt"

    def __init__(self, path, device: str = "cuda:0", trust_engine: bool = False):
        if not trust_engine:
            raise BackendError(
                f"{path}: a TensorRT engine is native code, and loading one from an untrusted "
                f"source is running untrusted code; load an engine you built or trust with "
                f"--trust-engine (trust_engine=True)")
        from .._tensorrt import check_tensorrt
        from ..metadata import read_tensorrt_metadata
        trt = check_tensorrt("TensorRT inference", BackendError)
        path = Path(path)
        self.meta = read_tensorrt_metadata(path)
        self.device = torch.device(device if str(device).startswith("cuda") else "cuda:0")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendError(f"{path}: not a TensorRT engine for this TensorRT/GPU")
        self.context = self.engine.create_execution_context()
        self.batch = self.meta.batch or 1
        self.trt = trt

    def __call__(self, images: Tensor) -> list[Tensor]:
        trt = self.trt
        x = images.to(self.device, torch.float32).contiguous()
        self.context.set_input_shape("images", tuple(x.shape))
        self.context.set_tensor_address("images", int(x.data_ptr()))
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
                  trt.int64: torch.int64, trt.bool: torch.bool}
        outs = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            kind = self.engine.get_tensor_dtype(name)
            if kind not in dtypes:
                raise BackendError(f"engine output {name!r} has unsupported type {kind}")
            t = torch.empty(shape, dtype=dtypes[kind], device=self.device)
            self.context.set_tensor_address(name, int(t.data_ptr()))
            outs.append(t)
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execution failed")
        stream.synchronize()
        return [o.float().cpu() if o.dtype == torch.float16 else o.cpu() for o in outs]


BACKENDS = {"torch": TorchBackend, "onnxruntime": OnnxRuntimeBackend,
            "openvino": OpenVINOBackend, "tensorrt": TensorRTBackend}

SUFFIXES = {".onnx": "onnxruntime", ".xml": "openvino", ".engine": "tensorrt",
            ".plan": "tensorrt", ".pth": "torch", ".pt": "torch"}
"""Weights-file suffix -> default backend: the one table (``Detector``, ``val``, ``bench``)."""


def backend_for_path(path, default: str | None = None) -> str:
    """The default backend for a weights file, by its suffix (``default`` for an unknown
    suffix; an error when ``default`` is None)."""
    suffix = Path(str(path)).suffix.lower()
    if suffix not in SUFFIXES:
        if default is not None:
            return default
        raise BackendError(f"{path}: cannot tell the backend from the suffix {suffix!r}; "
                           f"pass backend= one of {sorted(BACKENDS)}")
    return SUFFIXES[suffix]


def is_export(path) -> bool:
    """Whether ``path`` names an exported model (a suffix of a backend other than torch)."""
    return backend_for_path(path, default="torch") != "torch"


def open_backend(weights, backend: str | None = None, device: str = "cpu",
                 threads: int | None = None, half: bool = False, model: str | None = None,
                 imgsz: tuple[int, int] | None = None, trust_engine: bool = False) -> Backend:
    """Open ``weights`` with ``backend`` (default: chosen from the file suffix).

    trust_engine: allow a TensorRT engine to load (an engine is native code: only engines
    you built or trust)."""
    from ..models.detector import DAMOYOLO
    if backend is None:
        backend = "torch" if isinstance(weights, DAMOYOLO) else backend_for_path(weights)
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if not isinstance(weights, DAMOYOLO) and not Path(str(weights)).is_file():
        raise MissingFileError(f"{weights}: no such weights file")
    if backend == "torch":
        # for the process, not only around the backend's calls: the Detector's pre- and
        # post-processing (and bench's end-to-end figure) run at the same count
        set_torch_threads(threads)
        return TorchBackend(weights, device=device, half=half, model=model, imgsz=imgsz)
    if half and backend in ("onnxruntime", "openvino"):
        raise BackendError(f"--half applies to the torch and tensorrt backends; for {backend} "
                           "export an fp16 model instead")
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(weights, device=device, threads=threads)
    if backend == "openvino":
        return OpenVINOBackend(weights, device=device, threads=threads)
    return TensorRTBackend(weights, device=device, trust_engine=trust_engine)


default_threads = usable_cpus
"""CPU threads to use by default: all cores this process may run on
(:func:`damoyolo.runtime.cpu.usable_cpus`)."""
