"""Label assignment between priors and ground truths.

``train.assigner`` picks one: ``aligned_ota`` (DAMO-YOLO, the default), ``simota`` (YOLOX)
or ``tal`` (TOOD / PP-YOLOE).  They share one interface: ``assigner(cls_logits, pred_boxes,
priors, gt_boxes, gt_labels, gt_mask) -> Assignment``.
"""

from ..config import ConfigError
from .aligned_ota import AlignedOTA
from .common import Assignment, pad_targets
from .simota import SimOTA
from .tal import TaskAlignedAssigner

__all__ = ["AlignedOTA", "SimOTA", "TaskAlignedAssigner", "Assignment", "pad_targets",
           "ASSIGNERS", "build_assigner"]

ASSIGNERS = {"aligned_ota": AlignedOTA, "simota": SimOTA, "tal": TaskAlignedAssigner}


def build_assigner(name: str, num_classes: int):
    """The assigner named ``name`` (a key of :data:`ASSIGNERS`) with its published defaults."""
    try:
        cls = ASSIGNERS[name]
    except KeyError:
        raise ConfigError(f"unknown assigner {name!r}; valid: {', '.join(ASSIGNERS)}") from None
    return cls(num_classes)
