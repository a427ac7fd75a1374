"""Evaluating any model file: a checkpoint or an export opened as a
:class:`~damoyolo.eval.predictor.Predictor` for :func:`damoyolo.eval.evaluate`, as
``damoyolo val`` does.

- :func:`predictor_from_detector`: a :class:`damoyolo.Detector` (any backend);
- :func:`open_predictor`: a checkpoint or an exported file.
"""

from __future__ import annotations

import torch

from ..eval.predictor import Predictor

__all__ = ["predictor_from_detector", "open_predictor"]


def predictor_from_detector(det) -> Predictor:
    """A :class:`damoyolo.Detector` with its own thresholds: inputs stay on the CPU (the
    backend moves them to its device)."""
    bdev = getattr(det.backend, "device", None)
    cpu = torch.device("cpu")
    # the JSON view of the metadata (any mapping with the key): a list of ids or None
    return Predictor(det.forward, det.postprocess, cpu,
                     bdev if isinstance(bdev, torch.device) else cpu, det.class_names,
                     det.backend.meta.get("category_ids"), tuple(det.input_size))


def _preset_max_det(preset: str | None) -> int:
    """The max_det a torch evaluation of ``preset`` uses (the head default if unknown)."""
    from ..config import HeadConfig
    from ..presets import get_preset
    try:
        return int(get_preset(preset).model.head.max_det)
    except (KeyError, ValueError, TypeError, AttributeError):
        return int(HeadConfig().max_det)


def open_predictor(weights, backend: str | None = None, model: str | None = None,
                   device: str = "cpu", imgsz: tuple[int, int] | None = None,
                   conf: float | None = None, iou: float | None = None,
                   max_det: int | None = None, threads: int | None = None,
                   batch: int = 8, trust_engine: bool = False) -> Predictor:
    """Open a checkpoint (torch) or an exported model for evaluation.

    backend: default from the suffix (:data:`damoyolo.infer.backends.SUFFIXES`; an unknown
    suffix is read as a checkpoint).  Exports take class names, category ids, input size
    and preprocessing from their metadata; ``max_det`` defaults to the preset's (an
    end-to-end export keeps at most its own).
    """
    from ..infer.backends import backend_for_path

    if backend is None:
        backend = backend_for_path(weights, default="torch")
    if backend == "torch":
        from ..checkpoint import load_model
        net = load_model(weights, model=model, device=device)
        return Predictor.from_model(net, conf_thresh=conf, iou_thresh=iou, max_det=max_det,
                                    device=device, imgsz=imgsz)
    from ..infer.detector import Detector
    notes = []
    if model:
        notes.append(f"note: --model is ignored for exported models ({weights} carries its "
                     "preset in its metadata)")
    det = Detector(weights, backend=backend, device=device, conf=conf, iou=iou,
                   threads=threads, batch_size=batch, imgsz=imgsz, trust_engine=trust_engine)
    meta = det.backend.meta
    det.max_det = max_det or _preset_max_det(meta.preset)
    if det.backend.mode == "end2end":
        det.max_det = min(det.max_det, int(meta.max_det or det.max_det))
        if iou is not None and abs(iou - meta.end2end_iou_thresh) > 1e-9:
            notes.append(f"note: end-to-end export: NMS IoU is fixed at "
                         f"{meta.end2end_iou_thresh} in the graph; --iou is ignored")
        notes.append(f"end-to-end export: in-graph NMS (conf > {meta.end2end_conf_thresh}, "
                     f"IoU {meta.end2end_iou_thresh}, max_det {meta.max_det})")
    pred = predictor_from_detector(det)
    size = pred.input_size
    pred.description = (f"{weights}: {det.backend.name} backend, {det.backend.mode} outputs, "
                        f"input {size[0]}x{size[1]}, {len(pred.class_names)} classes")
    q = meta.quantization
    if q:  # an INT8 export: say how it was quantized
        pred.description += (f"\nINT8 model: {q.get('tool')}, "
                             f"{len(q.get('float_blocks', []))} block(s) kept float, "
                             f"calibrated on {q['calibration']['images']} images")
    pred.notes = notes
    return pred
