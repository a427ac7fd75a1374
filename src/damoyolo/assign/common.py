"""What the assigners share: padded targets, the prior regions, the result type and the
clamped log-probabilities of their classification costs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Assignment", "pad_targets", "prior_regions", "assignment_from_matching", "LOG_MIN",
           "log_sigmoid_pair"]

LOG_MIN = -100.0  # log clamp of torch's binary_cross_entropy on probabilities


def log_sigmoid_pair(logits: Tensor) -> tuple[Tensor, Tensor]:
    """(log p, log (1 - p)) of ``p = sigmoid(logits)``, clamped like ``binary_cross_entropy``."""
    return (F.logsigmoid(logits).clamp(min=LOG_MIN), F.logsigmoid(-logits).clamp(min=LOG_MIN))


@dataclass
class Assignment:
    """Result for a batch of ``B`` images with ``A`` priors.

    fg: (B, A) bool, prior is a positive.
    gt_index: (B, A) int64, index of the matched GT slot (0 where not fg).
    labels: (B, A) int64, matched class (``num_classes`` = background where not fg).
    ious: (B, A) float, the soft classification target of each positive (0 where not fg): the
    IoU of the prior's predicted box with its GT for AlignedOTA and SimOTA, the normalised
    alignment metric for TAL.
    boxes: (B, A, 4) float, matched GT box xyxy in input pixels (0 where not fg).
    """

    fg: Tensor
    gt_index: Tensor
    labels: Tensor
    ious: Tensor
    boxes: Tensor

    @property
    def num_pos(self) -> int:
        return int(self.fg.sum())


def pad_targets(targets: list[dict], device=None) -> tuple[Tensor, Tensor, Tensor]:
    """List of target dicts (``boxes`` (N_i, 4) xyxy, ``labels`` (N_i,)) -> padded tensors.

    Returns gt_boxes (B, M, 4) float32, gt_labels (B, M) int64, gt_mask (B, M) bool with
    ``M = max(N_i)`` (at least 1 so shapes stay non-empty; padded slots are masked out).
    """
    b = len(targets)
    m = max([int(t["boxes"].shape[0]) for t in targets] + [1])
    boxes = torch.zeros(b, m, 4, dtype=torch.float32, device=device)
    labels = torch.zeros(b, m, dtype=torch.int64, device=device)
    mask = torch.zeros(b, m, dtype=torch.bool, device=device)
    for i, t in enumerate(targets):
        n = int(t["boxes"].shape[0])
        if n:
            boxes[i, :n] = t["boxes"].to(device=device, dtype=torch.float32)
            labels[i, :n] = t["labels"].to(device=device, dtype=torch.int64)
            mask[i, :n] = True
    return boxes, labels, mask


def prior_regions(priors: Tensor, gt_boxes: Tensor, gt_mask: Tensor, center_radius: float
                  ) -> tuple[Tensor, Tensor]:
    """(in_box, in_centre), each (B, A, M) bool, False for padded GT slots.

    in_box: the prior point lies strictly inside the GT box; in_centre: strictly inside the
    square ``centre +- center_radius * stride`` of the GT.  priors (A, 4) rows
    (x, y, stride_x, stride_y); gt_boxes (B, M, 4) xyxy; gt_mask (B, M).
    """
    a = priors.shape[0]
    px, py, sx, sy = (priors[:, i].view(1, a, 1) for i in range(4))
    x1, y1, x2, y2 = (gt_boxes[..., i].unsqueeze(1) for i in range(4))  # (B, 1, M)
    in_box = torch.minimum(torch.minimum(px - x1, py - y1),
                           torch.minimum(x2 - px, y2 - py)) > 0
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    rx, ry = center_radius * sx, center_radius * sy
    in_ctr = torch.minimum(torch.minimum(px - (cx - rx), py - (cy - ry)),
                           torch.minimum((cx + rx) - px, (cy + ry) - py)) > 0
    gmask = gt_mask.unsqueeze(1)
    return in_box & gmask, in_ctr & gmask


def assignment_from_matching(matching: Tensor, quality: Tensor, gt_boxes: Tensor,
                             gt_labels: Tensor, num_classes: int) -> Assignment:
    """Pack a (B, A, M) one-GT-per-prior matching into an :class:`Assignment`.

    quality: (B, A, M) soft target of each prior/GT pair (read where matched).
    """
    b, a, _ = matching.shape
    fg = matching.any(2)
    gt_index = matching.float().argmax(2)
    gt_index = torch.where(fg, gt_index, torch.zeros_like(gt_index))
    matched = quality.gather(2, gt_index.unsqueeze(2)).squeeze(2)
    labels = gt_labels.gather(1, gt_index)
    boxes = gt_boxes.gather(1, gt_index.unsqueeze(2).expand(b, a, 4))
    return Assignment(
        fg=fg,
        gt_index=gt_index,
        labels=torch.where(fg, labels, torch.full_like(labels, num_classes)),
        ious=torch.where(fg, matched, torch.zeros_like(matched)),
        boxes=torch.where(fg.unsqueeze(2), boxes, torch.zeros_like(boxes)),
    )
