"""Straightforward per-image AlignedOTA (loops over images and GTs), for tests and benchmarks.

Written directly from the description of the method: probabilities, full (A, M, C)
soft-label tensor, one ``topk`` per GT.  Returns the same fields as
:class:`damoyolo.assign.Assignment` for a single image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from damoyolo.ops.boxes import box_iou


def assign_one(scores, pred_boxes, priors, gt_boxes, gt_labels, num_classes, radius=2.5, topk=10,
               iou_w=3.0, cls_w=1.0, eps=1e-7):
    """scores (A, C) probabilities; pred_boxes (A, 4); priors (A, 4); gt (N, 4), (N,).

    Returns fg (A,), gt_index (A,), labels (A,), ious (A,).
    """
    a = scores.shape[0]
    n = gt_boxes.shape[0]
    fg = torch.zeros(a, dtype=torch.bool)
    gidx = torch.zeros(a, dtype=torch.long)
    labels = torch.full((a,), num_classes, dtype=torch.long)
    ious_out = torch.zeros(a)
    if n == 0:
        return fg, gidx, labels, ious_out
    x, y, s = priors[:, 0:1], priors[:, 1:2], priors[:, 2:3]
    in_box = torch.stack([x - gt_boxes[:, 0], y - gt_boxes[:, 1], gt_boxes[:, 2] - x,
                          gt_boxes[:, 3] - y], 0).min(0).values > 0
    cx = (gt_boxes[:, 0] + gt_boxes[:, 2]) / 2
    cy = (gt_boxes[:, 1] + gt_boxes[:, 3]) / 2
    in_ctr = torch.stack([x - (cx - radius * s), y - (cy - radius * s), (cx + radius * s) - x,
                          (cy + radius * s) - y], 0).min(0).values > 0
    valid = (in_box | in_ctr).any(1)
    if not valid.any():
        return fg, gidx, labels, ious_out
    vidx = valid.nonzero().squeeze(1)
    both = (in_box & in_ctr)[vidx]
    ious = box_iou(pred_boxes[vidx], gt_boxes)
    iou_cost = -torch.log(ious + eps)
    sc = scores[vidx].unsqueeze(1).expand(-1, n, -1)
    soft = F.one_hot(gt_labels, num_classes).float().unsqueeze(0) * ious.unsqueeze(2)
    cls_cost = (F.binary_cross_entropy(sc, soft, reduction="none")
                * (soft - sc).abs().pow(2)).sum(2)
    cost = cls_cost * cls_w + iou_cost * iou_w + (~both).float() * 1e8
    match = torch.zeros_like(cost)
    k_all = ious.topk(min(topk, len(vidx)), dim=0).values.sum(0).int().clamp(min=1)
    for g in range(n):
        pos = cost[:, g].topk(int(k_all[g]), largest=False).indices
        match[pos, g] = 1.0
    multi = match.sum(1) > 1
    if multi.any():
        best = cost[multi].argmin(1)
        match[multi] = 0.0
        match[multi.nonzero().squeeze(1), best] = 1.0
    sel = match.sum(1) > 0
    gi = match[sel].argmax(1)
    fg[vidx[sel]] = True
    gidx[vidx[sel]] = gi
    labels[vidx[sel]] = gt_labels[gi]
    ious_out[vidx[sel]] = ious[sel, gi]
    return fg, gidx, labels, ious_out
