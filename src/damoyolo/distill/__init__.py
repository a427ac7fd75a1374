"""Feature distillation (CWD with align module and channel-wise dynamic temperature).

``damoyolo train --teacher T.pth`` / ``damoyolo distill``; in Python
``Trainer(student, data, cfg, task=DistillTask(load_teacher("T.pth"), DistillConfig()))``.
"""

from .losses import METHODS, FeatureDistillLoss, channel_normalize, cwd_loss, mimic_loss
from .task import DistillTask, distill_weight, load_teacher

__all__ = ["DistillTask", "distill_weight", "load_teacher", "FeatureDistillLoss",
           "channel_normalize", "cwd_loss", "mimic_loss", "METHODS"]
