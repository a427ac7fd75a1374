"""Non-maximum suppression in plain torch, vectorised (no per-box Python loop).

:func:`batched_nms` is class-aware NMS that returns exactly what greedy NMS
returns (a box is dropped when a higher-scoring *kept* box of the same class
overlaps it with IoU > threshold).  Candidates are grouped by class (one padded row per
class, score-sorted) and every class is processed at once, a block of its
highest-scoring undecided boxes per round:

1. inside each block, the greedy result is the Cluster-NMS fixed point of the block's
   "overlaps a higher-scoring box" matrix (refined by matrix operations until it no
   longer changes: as many steps as the longest suppression chain, not one per box);
2. the blocks' kept boxes then suppress every box of their class they overlap, in one
   (classes x block x class size) IoU tensor.

A block is exact because every higher-scoring box of its class is already decided.  The
loop ends when nothing is undecided, or as soon as ``max_det`` kept boxes score above
every undecided box (greedy NMS keeps boxes in score order, so those are final).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .boxes import box_iou

__all__ = ["batched_nms", "multiclass_nms", "greedy_nms_reference"]

_BLOCK = 256  # undecided boxes per class resolved together per round


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_thresh: float,
                max_det: int | None = None, pre_nms_topk: int | None = None,
                block: int = _BLOCK) -> Tensor:
    """Class-aware NMS, identical to greedy NMS.

    Args:
        boxes: (N, 4) xyxy.  scores: (N,).  labels: (N,) integer classes.
        iou_thresh: suppress when IoU > iou_thresh.
        max_det: keep at most this many (highest scores); stops early once they are final.
        pre_nms_topk: consider only the top-k scores before NMS.
        block: undecided boxes per class resolved per round (speed only; the result does
            not depend on it).

    Returns:
        (K,) int64 indices into the inputs, sorted by descending score (ties: input order).
    """
    n = scores.numel()
    dev = scores.device
    if n == 0:
        return torch.empty(0, dtype=torch.long, device=dev)
    order = torch.argsort(scores, descending=True, stable=True)
    if pre_nms_topk is not None and n > pre_nms_topk:
        order = order[:pre_nms_topk]
    rank = torch.empty(n, dtype=torch.long, device=dev)  # position in greedy (score) order
    rank[order] = torch.arange(order.numel(), device=dev)
    # one padded row per class, score order inside each row
    idx = order[torch.argsort(labels[order], stable=True)]
    _, counts = torch.unique_consecutive(labels[idx], return_counts=True)
    g, m = counts.numel(), int(counts.max())
    gid = torch.repeat_interleave(torch.arange(g, device=dev), counts)
    pos = torch.arange(idx.numel(), device=dev) - (torch.cumsum(counts, 0) - counts)[gid]
    pb = boxes.new_zeros((g, m, 4), dtype=torch.float32)
    pb[gid, pos] = boxes[idx].float()
    ps = torch.full((g, m), float("-inf"), device=dev)
    ps[gid, pos] = scores[idx].float()
    undecided = torch.zeros((g, m), dtype=torch.bool, device=dev)
    undecided[gid, pos] = True
    keep = torch.zeros_like(undecided)
    cols = torch.arange(m, device=dev).expand(g, m)
    rows = torch.arange(g, device=dev)[:, None]
    limit = max_det if max_det is not None else n
    while bool(undecided.any()):
        nb = min(block, int(undecided.sum(1).max()))
        # the first nb undecided positions of every class (m marks padding)
        bpos = torch.where(undecided, cols, m).sort(dim=1).values[:, :nb]
        valid = bpos < m
        bpos = bpos.clamp(max=m - 1)
        bb = pb.gather(1, bpos[..., None].expand(-1, -1, 4))  # (G, nb, 4)
        over = box_iou(bb, bb) > iou_thresh
        over &= torch.ones((nb, nb), dtype=torch.bool, device=dev).triu_(1)
        over &= valid[:, :, None] & valid[:, None, :]
        k = valid
        for _ in range(nb):
            new_k = valid & ~(over & k[:, :, None]).any(dim=1)
            if torch.equal(new_k, k):
                break
            k = new_k
        r = rows.expand_as(bpos)
        undecided[r[valid], bpos[valid]] = False
        keep[r[k], bpos[k]] = True
        if not bool(undecided.any()):
            break
        hit = ((box_iou(bb, pb) > iou_thresh) & k[:, :, None]).any(dim=1)  # (G, M)
        undecided &= ~hit
        if max_det is not None and bool(undecided.any()):
            top_open = ps[undecided].max()
            if int((ps[keep] > top_open).sum()) >= limit:
                break
    kept = idx[keep[gid, pos]]
    kept = kept[torch.argsort(rank[kept])]
    return kept[:limit]


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
