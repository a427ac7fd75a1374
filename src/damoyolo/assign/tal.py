"""Task-aligned assignment (TAL; TOOD, as used by PP-YOLOE), vectorised over the batch.

For every GT, the candidates are the priors whose point lies strictly inside the GT box.
Each prior/GT pair gets the alignment metric ``t = s^alpha * u^beta``, where ``s`` is the
predicted probability of the GT's class and ``u`` the IoU of the predicted box with the GT.
Each GT takes the ``topk`` candidates of largest ``t``; a prior taken by several GTs keeps
the GT it overlaps most (largest ``u``).  The soft classification target of a positive is
its metric normalised per GT, ``t * max_u / max_t`` over that GT's positives, so the best
aligned prior of a GT gets the GT's largest IoU.  Defaults are the published ones
(``topk=13, alpha=1, beta=6``).  The static (ATSS) warm-up that PP-YOLOE runs for its first
epochs is not part of this assigner.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops.boxes import box_iou
from .common import Assignment, assignment_from_matching, prior_regions

__all__ = ["TaskAlignedAssigner"]


class TaskAlignedAssigner:
    """TAL (TOOD / PP-YOLOE defaults: top-13, alpha 1, beta 6)."""

    def __init__(self, num_classes: int, topk: int = 13, alpha: float = 1.0, beta: float = 6.0,
                 eps: float = 1e-9):
        self.num_classes = num_classes
        self.topk = topk
        self.alpha = alpha
        self.beta = beta
        self.eps = eps

    @torch.no_grad()
    def __call__(self, cls_logits: Tensor, pred_boxes: Tensor, priors: Tensor, gt_boxes: Tensor,
                 gt_labels: Tensor, gt_mask: Tensor) -> Assignment:
        """Same arguments and result as :class:`~damoyolo.assign.AlignedOTA`."""
        b, a, c = cls_logits.shape
        m = gt_boxes.shape[1]
        dev = cls_logits.device
        gt_boxes = gt_boxes.float()
        in_gt, _ = prior_regions(priors, gt_boxes, gt_mask, 0.0)  # (B, A, M)
        ious = torch.where(in_gt, box_iou(pred_boxes.float(), gt_boxes).clamp(min=0),
                           torch.zeros((), device=dev))
        lab = gt_labels.clamp(0, c - 1).unsqueeze(1).expand(b, a, m)
        scores = cls_logits.float().sigmoid().gather(2, lab)  # (B, A, M)
        metric = torch.where(in_gt, scores.pow(self.alpha) * ious.pow(self.beta),
                             torch.zeros((), device=dev))

        # top-k candidates per GT by the metric; non-candidates rank below every candidate
        k = min(self.topk, a)
        ranked = torch.where(in_gt, metric, torch.full((), -1.0, device=dev))
        idx = ranked.topk(k, dim=1).indices  # (B, k, M)
        matching = torch.zeros(b, a, m, dtype=torch.bool, device=dev)
        matching.scatter_(1, idx, True)
        matching &= in_gt
        # a prior taken by several GTs keeps the GT of largest IoU
        multi = matching.sum(2) > 1
        if bool(multi.any()):
            best = torch.where(in_gt, ious, torch.full((), -1.0, device=dev)).argmax(2)
            one = torch.nn.functional.one_hot(best, m).bool()
            matching = torch.where(multi.unsqueeze(2), one, matching)

        # normalised metric: t * (max IoU of the GT's positives) / (max t of its positives)
        pos_metric = torch.where(matching, metric, torch.zeros((), device=dev))
        max_t = pos_metric.amax(1, keepdim=True)  # (B, 1, M)
        max_u = torch.where(matching, ious, torch.zeros((), device=dev)).amax(1, keepdim=True)
        quality = pos_metric * max_u / (max_t + self.eps)
        return assignment_from_matching(matching, quality, gt_boxes, gt_labels, c)
