"""The model factory: a :class:`DAMOYOLO` from a preset name or a :class:`ModelConfig`."""

from __future__ import annotations

import dataclasses

from ..classes import COCO_CLASSES
from ..config import ModelConfig
from ..presets import get_preset
from .detector import DAMOYOLO

__all__ = ["build_model"]


def build_model(model: str | ModelConfig = "damoyolo-t", num_classes: int | None = None,
                class_names: list[str] | None = None) -> DAMOYOLO:
    """Build a model from a preset name or a ModelConfig (random weights).

    class_names sets the number of classes; without them an 80-class model is named with
    the COCO classes.
    """
    cfg = get_preset(model).model if isinstance(model, str) else model
    if class_names is not None:
        num_classes = len(class_names)
    if num_classes is not None and num_classes != cfg.head.num_classes:
        cfg = dataclasses.replace(cfg, head=dataclasses.replace(cfg.head, num_classes=num_classes))
    if class_names is None and cfg.head.num_classes == 80:
        class_names = list(COCO_CLASSES)
    return DAMOYOLO(cfg, class_names)
