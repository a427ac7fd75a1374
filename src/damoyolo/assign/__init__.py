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
           "ASSIGNERS", "assigner_class", "build_assigner"]

ASSIGNERS = {"aligned_ota": AlignedOTA, "simota": SimOTA, "tal": TaskAlignedAssigner}


def assigner_class(name: str) -> type:
    """The assigner class named ``name`` (a key of :data:`ASSIGNERS`); an unknown name is a
    :class:`~damoyolo.config.ConfigError` listing the valid ones.  Cheap: callers check a
    configured name with it before any heavy work."""
    try:
        return ASSIGNERS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown assigner {name!r} (train.assigner); valid: "
                          f"{', '.join(ASSIGNERS)}") from None


def build_assigner(name: str, num_classes: int):
    """The assigner named ``name`` (a key of :data:`ASSIGNERS`) with its published defaults."""
    return assigner_class(name)(num_classes)
