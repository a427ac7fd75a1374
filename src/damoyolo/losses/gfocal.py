"""Generalized Focal Loss terms: QFL, DFL and the GIoU loss (element-wise, unreduced).

Numerics follow the release (which applies ``binary_cross_entropy`` to sigmoid
probabilities, clamping logs at -100) but are computed from logits in a stable form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops.boxes import generalized_iou

__all__ = ["quality_focal_loss", "distribution_focal_loss", "giou_loss"]


def quality_focal_loss(logits: Tensor, labels: Tensor, scores: Tensor, beta: float = 2.0) -> Tensor:
    """QFL per anchor.

    logits: (N, C) class logits; labels: (N,) int64 in ``[0, C]`` (``C`` = background);
    scores: (N,) float IoU target of the positive class.  Returns (N,) summed over classes:
    ``BCE(p, t) * |t - p|^beta`` with ``t = score`` at the label and 0 elsewhere.
    """
    logits = logits.float()
    n, c = logits.shape
    p = logits.sigmoid()
    target = torch.zeros_like(logits)
    pos = (labels >= 0) & (labels < c)
    if pos.any():
        rows = pos.nonzero().squeeze(1)
        target[rows, labels[rows]] = scores[rows].to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (bce * (target - p).abs().pow(beta)).sum(1)


def distribution_focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """DFL: logits (N, R+1), target (N,) float distances in bins, ``0 <= t < R``. Returns (N,)."""
    left = target.long()
    right = left + 1
    w_left = right.float() - target
    w_right = target - left.float()
    return (F.cross_entropy(logits.float(), left, reduction="none") * w_left
            + F.cross_entropy(logits.float(), right, reduction="none") * w_right)


def giou_loss(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """``1 - GIoU`` of aligned xyxy boxes (N, 4) -> (N,)."""
    return 1.0 - generalized_iou(pred.float(), target.float(), eps=eps)
