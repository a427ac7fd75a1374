"""Label assignment between priors and ground truths."""

from .aligned_ota import AlignedOTA, Assignment, pad_targets

__all__ = ["AlignedOTA", "Assignment", "pad_targets"]
