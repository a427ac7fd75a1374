"""Non-maximum suppression in plain torch, vectorised (no per-box Python loop).

:func:`batched_nms` is class-aware NMS that returns exactly what greedy NMS
returns (a box is dropped when a higher-scoring *kept* box of the same class
overlaps it with IoU > threshold).  It uses the Cluster-NMS fixed point: the
boolean "overlaps a higher-scoring box" matrix is built once per class (padded
into one batch), and the keep mask is refined by matrix operations until it no
longer changes; the number of rounds is the length of the longest suppression
chain, not the number of boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .boxes import box_iou

__all__ = ["batched_nms", "multiclass_nms", "greedy_nms_reference"]

_MAX_CELLS_PER_CHUNK = 16_000_000  # bound on IoU cells computed at once


def _overlap_matrix(boxes: Tensor, valid: Tensor, iou_thresh: float) -> Tensor:
    """``boxes`` (G, M, 4) score-sorted per group -> bool (G, M, M), True where i < j overlap."""
    g, m, _ = boxes.shape
    out = torch.empty((g, m, m), dtype=torch.bool, device=boxes.device)
    rows = max(1, _MAX_CELLS_PER_CHUNK // max(1, g * m))
    for r0 in range(0, m, rows):  # chunks over rows bound memory; few chunks in practice
        r1 = min(m, r0 + rows)
        out[:, r0:r1] = box_iou(boxes[:, r0:r1], boxes) > iou_thresh
    upper = torch.ones((m, m), dtype=torch.bool, device=boxes.device).triu_(1)
    out &= upper
    out &= valid[:, :, None] & valid[:, None, :]
    return out


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_thresh: float,
                max_det: int | None = None, pre_nms_topk: int | None = None) -> Tensor:
    """Class-aware NMS.

    Args:
        boxes: (N, 4) xyxy.  scores: (N,).  labels: (N,) integer classes.
        iou_thresh: suppress when IoU > iou_thresh.
        max_det: keep at most this many (highest scores).
        pre_nms_topk: consider only the top-k scores before NMS.

    Returns:
        (K,) int64 indices into the inputs, sorted by descending score.
    """
    n = scores.numel()
    if n == 0:
        return torch.empty(0, dtype=torch.long, device=scores.device)
    order = torch.argsort(scores, descending=True, stable=True)
    if pre_nms_topk is not None and n > pre_nms_topk:
        order = order[:pre_nms_topk]
    # group by class, keeping score order inside each class
    idx = order[torch.argsort(labels[order], stable=True)]
    lab = labels[idx]
    _, counts = torch.unique_consecutive(lab, return_counts=True)
    g, m = counts.numel(), int(counts.max())
    starts = torch.cumsum(counts, 0) - counts
    gid = torch.repeat_interleave(torch.arange(g, device=idx.device), counts)
    pos = torch.arange(idx.numel(), device=idx.device) - starts[gid]
    padded = boxes.new_zeros((g, m, 4))
    padded[gid, pos] = boxes[idx].to(padded.dtype)
    valid = torch.zeros((g, m), dtype=torch.bool, device=idx.device)
    valid[gid, pos] = True

    over = _overlap_matrix(padded, valid, iou_thresh)
    keep = valid.clone()
    for _ in range(m):
        suppressed = (over & keep[:, :, None]).any(dim=1)
        new_keep = valid & ~suppressed
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    kept = idx[keep[gid, pos]]
    kept = kept[torch.argsort(scores[kept], descending=True, stable=True)]
    if max_det is not None:
        kept = kept[:max_det]
    return kept


def multiclass_nms(scores: Tensor, boxes: Tensor, conf_thresh: float, iou_thresh: float,
                   max_det: int = 500, pre_nms_topk: int | None = 30_000
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image multi-class NMS as in the official inference path.

    Every (anchor, class) pair with ``score > conf_thresh`` is a candidate; class-aware
    NMS at ``iou_thresh``; at most ``max_det`` kept, by descending score.

    Args:
        scores: (A, C) class probabilities.  boxes: (A, 4) xyxy.

    Returns:
        boxes (K, 4), scores (K,), labels (K,) int64.
    """
    mask = scores > conf_thresh
    anchor_idx, labels = mask.nonzero(as_tuple=True)
    cand_scores = scores[anchor_idx, labels]
    cand_boxes = boxes[anchor_idx]
    keep = batched_nms(cand_boxes, cand_scores, labels, iou_thresh, max_det=max_det,
                       pre_nms_topk=pre_nms_topk)
    return cand_boxes[keep], cand_scores[keep], labels[keep]


def greedy_nms_reference(boxes: Tensor, scores: Tensor, labels: Tensor,
                         iou_thresh: float) -> Tensor:
    """Plain greedy per-box NMS (a slow reference for tests and benchmarks)."""
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    keep: list[int] = []
    suppressed = set()
    iou = box_iou(boxes, boxes)
    for i in order:
        if i in suppressed:
            continue
        keep.append(i)
        same = (labels == labels[i]) & (iou[i] > iou_thresh)
        suppressed.update(same.nonzero().flatten().tolist())
    return torch.tensor(keep, dtype=torch.long)
