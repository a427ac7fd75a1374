"""AlignedOTA label assignment (DAMO-YOLO), vectorised over the batch.

For every image and ground truth (GT) the candidate anchors are the *valid* priors:
prior points lying strictly inside any GT box or inside any GT's centre region
(``centre +- center_radius * stride``).  The cost of matching prior ``a`` to GT ``g``
is::

    cost = cls_weight * cls_cost + iou_weight * (-log(IoU + eps)) + INF * (not in box and centre)

where ``cls_cost`` is the quality-focal cross-entropy of the predicted class
probabilities against the soft one-hot target ``IoU(pred_a, gt_g) * onehot(label_g)``,
each class term scaled by ``|target - p|^2``.  Each GT takes its ``k`` cheapest priors,
``k = max(1, int(sum of its top-``candidate_topk`` IoUs))`` (dynamic-k); a prior taken by
several GTs keeps only the GT of minimum cost.

All shapes are padded: ``M`` GT slots per image with a boolean mask, so images with
no GT are valid (nothing is assigned).  No Python loop over GTs or images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops.boxes import box_iou
from .common import LOG_MIN, Assignment, assignment_from_matching, log_sigmoid_pair, \
    pad_targets, prior_regions

__all__ = ["AlignedOTA", "Assignment", "pad_targets"]

_INF = 1e8  # penalty for priors outside (box and centre), as in the release


class AlignedOTA:
    """AlignedOTA assigner (official defaults: radius 2.5, top-10, iou 3.0, cls 1.0)."""

    def __init__(self, num_classes: int, center_radius: float = 2.5, candidate_topk: int = 10,
                 iou_weight: float = 3.0, cls_weight: float = 1.0, eps: float = 1e-7):
        self.num_classes = num_classes
        self.center_radius = center_radius
        self.candidate_topk = candidate_topk
        self.iou_weight = iou_weight
        self.cls_weight = cls_weight
        self.eps = eps

    inf = _INF  # cost added for candidates not in both the box and the centre region

    def _cls_cost(self, cls_logits: Tensor, ious: Tensor, gt_labels: Tensor) -> Tensor:
        """(B, A, M) classification cost: the quality-focal cross-entropy of the probabilities
        against the soft one-hot target ``IoU * onehot(label)``.

        Classes other than the GT's are scored against 0: ``BCE(p, 0) * p^2``, summed once per
        prior; the GT's class term is swapped for the soft-label one (no (B, A, M, C) tensor).
        """
        b, a, c = cls_logits.shape
        m = gt_labels.shape[1]
        p = cls_logits.sigmoid()
        neg_sum = (F.softplus(cls_logits).clamp(max=-LOG_MIN) * p * p).sum(2, keepdim=True)
        lab = gt_labels.clamp(0, c - 1).unsqueeze(1).expand(b, a, m)  # (B, A, M)
        x_l = cls_logits.gather(2, lab)
        logp_l, log1mp_l = log_sigmoid_pair(x_l)
        p_l = x_l.sigmoid()
        neg_l = -log1mp_l * p_l * p_l
        bce_l = -(ious * logp_l + (1 - ious) * log1mp_l)
        d = ious - p_l
        return neg_sum - neg_l + bce_l * d * d

    @torch.no_grad()
    def __call__(self, cls_logits: Tensor, pred_boxes: Tensor, priors: Tensor, gt_boxes: Tensor,
                 gt_labels: Tensor, gt_mask: Tensor) -> Assignment:
        """Assign GTs to priors.

        cls_logits: (B, A, C) class logits (probabilities are their sigmoid).
        pred_boxes: (B, A, 4) decoded xyxy boxes in input pixels.
        priors: (A, 4) rows (x, y, stride_x, stride_y), points in input pixels.
        gt_boxes: (B, M, 4) xyxy input pixels; gt_labels: (B, M) int64; gt_mask: (B, M) bool.
        """
        b, a, c = cls_logits.shape
        m = gt_boxes.shape[1]
        dev = cls_logits.device
        cls_logits = cls_logits.float()
        pred_boxes = pred_boxes.float()
        gt_boxes = gt_boxes.float()

        # --- geometric priors: (B, A, M)
        in_box, in_ctr = prior_regions(priors, gt_boxes, gt_mask, self.center_radius)
        gmask = gt_mask.unsqueeze(1)  # (B, 1, M)
        valid = (in_box | in_ctr).any(dim=2)  # (B, A)
        in_both = in_box & in_ctr

        # --- costs
        ious = box_iou(pred_boxes, gt_boxes)  # (B, A, M)
        cand = valid.unsqueeze(2) & gmask  # prior/GT pairs that take part
        ious = torch.where(cand, ious, torch.zeros((), device=dev))
        iou_cost = -torch.log(ious + self.eps)

        cls_cost = self._cls_cost(cls_logits, ious, gt_labels)

        cost = (cls_cost * self.cls_weight + iou_cost * self.iou_weight
                + (~in_both).float() * self.inf)
        cost = torch.where(cand, cost, torch.full((), float("inf"), device=dev))

        # --- dynamic k per GT: (B, M)
        topk = min(self.candidate_topk, a)
        top_ious = ious.topk(topk, dim=1).values  # (B, topk, M)
        ks = top_ious.sum(1).int().clamp(min=1)
        ks = torch.where(gt_mask & cand.any(1), ks, torch.zeros_like(ks))
        kmax = int(ks.max()) if ks.numel() else 0

        matching = torch.zeros(b, a, m, dtype=torch.bool, device=dev)
        if kmax > 0:
            idx = cost.topk(kmax, dim=1, largest=False).indices  # (B, kmax, M)
            take = torch.arange(kmax, device=dev).view(1, kmax, 1) < ks.unsqueeze(1)
            matching.scatter_(1, idx, take)
            # conflicts: a prior taken by several GTs keeps the GT of minimum cost
            multi = matching.sum(2) > 1  # (B, A)
            if bool(multi.any()):
                best = cost.argmin(2)  # (B, A)
                one = F.one_hot(best, m).bool()
                matching = torch.where(multi.unsqueeze(2), one, matching)

        return assignment_from_matching(matching, ious, gt_boxes, gt_labels, c)
