"""The "images -> detections" callable that :func:`damoyolo.eval.evaluate` runs.

A :class:`Predictor` maps a preprocessed batch (B, 3, H, W) float32 RGB 0..255 to one
:class:`~damoyolo.postprocess.Detections` per image, boxes in input pixels, in two stages
that the evaluation times separately: ``forward`` (the network; for end-to-end exports
including the in-graph NMS) and ``postprocess`` (decode + NMS outside the graph).

- :meth:`Predictor.from_model`: a :class:`damoyolo.DAMOYOLO` in eval mode (training mode
  restored after each batch), with the preset's thresholds unless given;
- :meth:`Predictor.from_detector`: a :class:`damoyolo.Detector` (any backend);
- :func:`open_predictor`: a checkpoint or an exported file, as ``damoyolo val`` opens it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

__all__ = ["Predictor", "open_predictor"]


@dataclass
class Predictor:
    """images -> detections, in two stages (module docstring).

    device: where the evaluation puts the loader's images; sync_device: the device to
    synchronise before reading the clock (a CUDA backend's); class_names, category_ids:
    the model's, when known; input_size: the network input (H, W), when fixed; notes:
    lines worth telling the user (e.g. what an end-to-end export fixes in its graph).
    """

    forward: Callable[[Tensor], Any]
    postprocess: Callable[[Any], list]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    sync_device: torch.device | None = None
    class_names: list[str] | None = None
    category_ids: list[int] | None = None
    input_size: tuple[int, int] | None = None
    description: str = ""
    notes: list[str] = field(default_factory=list)

    def __call__(self, images: Tensor) -> list:
        return self.postprocess(self.forward(images))

    @classmethod
    def from_model(cls, model, conf_thresh: float | None = None,
                   iou_thresh: float | None = None, max_det: int | None = None,
                   device: str | torch.device | None = None,
                   imgsz: tuple[int, int] | None = None) -> "Predictor":
        """A :class:`damoyolo.DAMOYOLO`: forward in eval mode, then
        :meth:`~damoyolo.DAMOYOLO.postprocess` with these thresholds (default: the preset's)."""
        dev = torch.device(device) if device is not None else next(model.parameters()).device

        def forward(images: Tensor):
            was_training = model.training
            model.eval()
            try:
                return model(images)
            finally:
                model.train(was_training)

        def postprocess(out) -> list:
            return model.postprocess(out, conf_thresh=conf_thresh, iou_thresh=iou_thresh,
                                     max_det=max_det)

        names = model.class_names or [str(i) for i in range(model.num_classes)]
        return cls(forward, postprocess, dev, dev, names, model.category_ids,
                   tuple(imgsz or model.input_size))

    @classmethod
    def from_detector(cls, det) -> "Predictor":
        """A :class:`damoyolo.Detector` with its own thresholds: inputs stay on the CPU (the
        backend moves them to its device)."""
        bdev = getattr(det.backend, "device", None)
        cpu = torch.device("cpu")
        return cls(det.forward, det.postprocess, cpu,
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
    det.max_det = max_det or _preset_max_det(meta.get("preset"))
    if det.backend.mode == "end2end":
        det.max_det = min(det.max_det, int(meta.get("max_det", det.max_det)))
        if iou is not None and abs(iou - meta["end2end_iou_thresh"]) > 1e-9:
            notes.append(f"note: end-to-end export: NMS IoU is fixed at "
                         f"{meta['end2end_iou_thresh']} in the graph; --iou is ignored")
        notes.append(f"end-to-end export: in-graph NMS (conf > {meta['end2end_conf_thresh']}, "
                     f"IoU {meta['end2end_iou_thresh']}, max_det {meta.get('max_det')})")
    pred = Predictor.from_detector(det)
    size = pred.input_size
    pred.description = (f"{weights}: {det.backend.name} backend, {det.backend.mode} outputs, "
                        f"input {size[0]}x{size[1]}, {len(pred.class_names)} classes")
    q = meta.get("quantization")
    if q:  # an INT8 export: say how it was quantized
        pred.description += (f"\nINT8 model: {q.get('tool')}, "
                             f"{len(q.get('float_blocks', []))} block(s) kept float, "
                             f"calibrated on {q['calibration']['images']} images")
    pred.notes = notes
    return pred
