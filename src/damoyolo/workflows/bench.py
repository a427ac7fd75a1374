"""Benchmarking a checkpoint or a preset on any backend: exported on the fly where the
backend needs a file, then timed by :func:`damoyolo.infer.benchmark.benchmark_detector`."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

__all__ = ["open_bench_detector", "export_architecture"]


def open_bench_detector(weights=None, model: str | None = None, backend: str | None = None,
                        imgsz: tuple[int, int] | None = None, batch: int = 1,
                        device: str = "cpu", half: bool = False, threads: int | None = None,
                        workdir: str | Path | None = None, trust_engine: bool = False,
                        log: Callable[[str], None] | None = print):
    """The :class:`Detector` to benchmark, and the architecture to count (params, FLOPs).

    weights: a checkpoint or an export; model: a preset name (random weights) instead.  A
    checkpoint or preset on ``onnxruntime`` / ``openvino`` is exported on the fly into
    ``workdir`` (at ``imgsz``, static ``batch``); an export runs as it is (fixed input
    size) and its architecture is built from the model config its metadata carries
    (:func:`export_architecture`; ``log`` gets the note when an older export carries none).
    Returns ``(detector, model)``.
    """
    from ..checkpoint import load_model
    from ..infer.backends import BackendError, backend_for_path
    from ..infer.detector import Detector
    from ..models.factory import build_model

    net = None
    if model or backend_for_path(weights) == "torch":
        net = build_model(model) if model else load_model(weights)
        backend = backend or "torch"
        hw = imgsz or net.input_size
        if backend in ("onnxruntime", "openvino"):
            if workdir is None:
                raise BackendError(f"benchmarking a checkpoint on {backend} exports it: "
                                   "pass workdir=")
            from ..export import export_onnx, export_openvino
            if backend == "onnxruntime":
                weights = export_onnx(net, Path(workdir) / "m.onnx", imgsz=hw, batch=batch)
            else:
                weights = export_openvino(net, Path(workdir) / "m.xml", imgsz=hw, batch=batch)
        elif backend == "torch":
            weights = net
        else:
            raise BackendError("benchmark TensorRT from an engine file: damoyolo export "
                               "--format tensorrt, then bench --weights model.engine")
    elif imgsz is not None:
        raise BackendError(f"{weights}: an export has a fixed input size; --imgsz applies to "
                           "checkpoints")
    det = Detector(weights, backend=backend, device=device, half=half,
                   imgsz=imgsz if backend == "torch" else None, threads=threads,
                   batch_size=batch, trust_engine=trust_engine)
    if net is None:  # an export: the architecture its metadata carries
        net = export_architecture(det.backend.meta, weights, log)
    return det, net


def export_architecture(meta, where, log: Callable[[str], None] | None = print):
    """The architecture of an export (random weights) from its metadata ``meta`` (an
    :class:`~damoyolo.metadata.ExportMetadata` of the file ``where``), to count its params and
    FLOPs: built from the model config it carries, checked first as a checkpoint's is
    (:func:`damoyolo.checkpoint.check_model_config`).  An export written before the config
    was carried is rebuilt from its preset name, as it was then, with a note to ``log``
    (a searched backbone or changed architecture is then counted as its preset)."""
    from ..checkpoint import CheckpointError, check_model_config
    from ..metadata import MetadataError
    from ..models.factory import build_model

    if meta.model is not None:
        try:
            cfg = check_model_config(meta.model, where, what="an export")
        except CheckpointError as e:
            raise MetadataError(str(e)) from None
        return build_model(cfg, class_names=list(meta.class_names))
    if not meta.preset:
        raise MetadataError(f"{where}: the metadata carries neither the model config nor a "
                            f"preset name; export the model again")
    if log is not None:
        log(f"note: {where} carries no model config (exported before exports carried it): "
            f"params and FLOPs are those of the preset {meta.preset}; export it again to "
            f"count its own architecture")
    return build_model(meta.preset, num_classes=len(meta.class_names))
