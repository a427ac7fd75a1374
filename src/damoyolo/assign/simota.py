"""SimOTA label assignment (YOLOX), on the same candidates and dynamic-k matching as AlignedOTA.

SimOTA is the assigner AlignedOTA refines.  It differs only in the classification cost:
the plain binary cross-entropy of the predicted class probabilities against the *hard*
one-hot target of the GT's class, summed over the classes::

    cost = BCE(p, onehot(label_g)).sum(classes) + 3 * (-log(IoU + 1e-8))
           + 1e5 * (not in box and centre)

(YOLOX's cost with the class probability in place of ``sqrt(cls * objectness)``: the head
has no objectness branch).  Candidates (prior in a GT box or its centre region of radius
2.5 strides), dynamic k from the top-10 IoUs and the minimum-cost rule for priors taken by
several GTs are YOLOX's, which are also AlignedOTA's.  The soft classification target of a
positive is its IoU, as in YOLOX.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .aligned_ota import AlignedOTA
from .common import LOG_MIN, log_sigmoid_pair

__all__ = ["SimOTA"]


class SimOTA(AlignedOTA):
    """SimOTA assigner (YOLOX defaults: radius 2.5, top-10, iou 3.0, cls 1.0)."""

    inf = 1e5  # YOLOX's penalty for candidates not in both the box and the centre region

    def __init__(self, num_classes: int, center_radius: float = 2.5, candidate_topk: int = 10,
                 iou_weight: float = 3.0, cls_weight: float = 1.0, eps: float = 1e-8):
        super().__init__(num_classes, center_radius, candidate_topk, iou_weight, cls_weight, eps)

    def _cls_cost(self, cls_logits: Tensor, ious: Tensor, gt_labels: Tensor) -> Tensor:
        """(B, A, M): ``sum_c BCE(p_c, onehot_c(label))``; every class scored against 0
        (``-log(1 - p)``), then the GT's class term swapped for ``-log p``."""
        b, a, c = cls_logits.shape
        m = gt_labels.shape[1]
        neg_sum = F.softplus(cls_logits).clamp(max=-LOG_MIN).sum(2, keepdim=True)
        lab = gt_labels.clamp(0, c - 1).unsqueeze(1).expand(b, a, m)
        logp_l, log1mp_l = log_sigmoid_pair(cls_logits.gather(2, lab))
        return neg_sum + log1mp_l - logp_l
