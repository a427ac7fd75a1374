"""Detection losses."""

from .criterion import DAMOYOLOCriterion
from .gfocal import distribution_focal_loss, giou_loss, quality_focal_loss

__all__ = ["DAMOYOLOCriterion", "quality_focal_loss", "distribution_focal_loss", "giou_loss"]
