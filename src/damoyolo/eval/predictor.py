"""The "images -> detections" callable that :func:`damoyolo.eval.evaluate` runs.

A :class:`Predictor` maps a preprocessed batch (B, 3, H, W) float32 RGB 0..255 to one
:class:`~damoyolo.postprocess.Detections` per image, boxes in input pixels, in two stages
that the evaluation times separately: ``forward`` (the network; for end-to-end exports
including the in-graph NMS) and ``postprocess`` (decode + NMS outside the graph).

- :meth:`Predictor.from_model`: a :class:`damoyolo.DAMOYOLO` in eval mode (training mode
  restored after each batch), with the preset's thresholds unless given.

A :class:`damoyolo.Detector` (any backend) and a checkpoint or an exported file, as
``damoyolo val`` opens it, become predictors in :mod:`damoyolo.workflows.evaluate`
(``predictor_from_detector``, ``open_predictor``).
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor
from .._moved import moved

__all__ = ["Predictor"]


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
        """Deprecated (one release): :func:`damoyolo.workflows.evaluate.predictor_from_detector`."""
        warnings.warn("Predictor.from_detector moved to "
                      "damoyolo.workflows.evaluate.predictor_from_detector; the old name goes "
                      "in the next release", DeprecationWarning, stacklevel=2)
        return _moved("predictor_from_detector")(det)


# Deprecated: one release only.  Opening a Detector or an exported file as a predictor needs
# infer, so it lives in damoyolo.workflows.evaluate; the old names import from there with a
# DeprecationWarning.  The module is named as a string (importlib) so that this shim is not
# an import from the eval floor up to workflows; nothing else in the package may do this.
_MOVED = {"open_predictor": "damoyolo.workflows.evaluate"}


def _moved(name: str):
    return getattr(importlib.import_module("damoyolo.workflows.evaluate"), name)


__getattr__ = moved(__name__, _MOVED)
