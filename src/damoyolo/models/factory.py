"""The model factory: a :class:`DAMOYOLO` from a preset name or a :class:`ModelConfig`."""

from __future__ import annotations

import dataclasses

from ..classes import COCO_CLASSES
from ..config import ModelConfig
from ..presets import get_preset
from .detector import DAMOYOLO

__all__ = ["build_model", "calibrated_model"]


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


def calibrated_model(name: str, x, seed: int = 0, class_names: list[str] | None = None) -> DAMOYOLO:
    """A randomly initialised preset whose outputs on ``x`` look like a trained model's, for
    parity tests and benchmarks that need real post-processing work without a checkpoint.

    BatchNorm statistics are set from ``x`` (a preprocessed batch) and the head projections
    rescaled so that class logits have unit spread and a few percent of (anchor, class) pairs
    pass the threshold: NMS then has real work and boxes vary.  Returned in eval mode.
    """
    import torch
    torch.manual_seed(seed)
    m = build_model(name, class_names=class_names)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.reset_running_stats()
                mod.momentum = None  # a cumulative average: exactly the statistics of x
        m.train()
        m(x)
        m.eval()
        for feat, c, r in zip(m.features(x), m.head.cls_preds, m.head.reg_preds):
            for conv, std, bias in ((c, 1.0, -4.5), (r, 1.5, 0.0)):
                y = torch.nn.functional.conv2d(feat, conv.weight, None, padding=conv.padding)
                k = std / y.std().clamp_min(1e-6)
                conv.weight.mul_(k)
                conv.bias.fill_(bias - float(y.mean() * k))
    return m
