"""Box maths: pure tensor functions, one copy each.

Conventions: ``xyxy`` boxes are ``(x1, y1, x2, y2)`` in pixels with ``x2 >= x1``;
``cxcywh`` boxes are ``(cx, cy, w, h)``; ``xywh`` boxes (COCO) are ``(x1, y1, w, h)``.
Areas use continuous coordinates (no ``+1``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "box_area",
    "box_iou",
    "generalized_iou",
    "xyxy_to_cxcywh",
    "cxcywh_to_xyxy",
    "distance_to_bbox",
    "bbox_to_distance",
]


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``(..., 4)`` xyxy boxes -> ``(...)``; degenerate boxes give 0."""
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def box_iou(a: Tensor, b: Tensor, eps: float = 0.0) -> Tensor:
    """IoU matrix of xyxy boxes: ``a`` ``(..., N, 4)``, ``b`` ``(..., M, 4)`` -> ``(..., N, M)``."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[..., :, None] + box_area(b)[..., None, :] - inter
    return inter / (union + eps) if eps else inter / union.clamp(min=torch.finfo(union.dtype).tiny)


def generalized_iou(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """Element-wise GIoU of aligned xyxy boxes ``(..., 4)`` -> ``(...)`` in ``[-1, 1]``."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a) + box_area(b) - inter + eps
    iou = inter / union
    elt = torch.minimum(a[..., :2], b[..., :2])
    erb = torch.maximum(a[..., 2:], b[..., 2:])
    ewh = (erb - elt).clamp(min=0)
    enclose = ewh[..., 0] * ewh[..., 1] + eps
    return iou - (enclose - union) / enclose


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def distance_to_bbox(points: Tensor, distance: Tensor) -> Tensor:
    """Decode ``(l, t, r, b)`` distances from ``points`` ``(..., 2)`` into xyxy boxes."""
    return torch.cat([points - distance[..., :2], points + distance[..., 2:]], dim=-1)


def bbox_to_distance(points: Tensor, boxes: Tensor, max_dist: float | None = None,
                     eps: float = 0.1) -> Tensor:
    """Encode xyxy ``boxes`` as ``(l, t, r, b)`` distances from ``points``.

    With ``max_dist`` the distances are clamped to ``[0, max_dist - eps]`` (GFL's DFL targets).
    """
    d = torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], dim=-1)
    if max_dist is not None:
        d = d.clamp(min=0, max=max_dist - eps)
    return d
