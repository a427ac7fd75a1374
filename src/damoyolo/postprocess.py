"""Post-processing: decoded scores/boxes -> per-image :class:`Detections`.

Official inference path: every (anchor, class) pair with score > ``conf_thresh``
is a candidate, class-aware NMS at ``iou_thresh``, at most ``max_det`` kept in
descending score order; boxes are then scaled from network-input pixels back to
the original image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .ops.nms import multiclass_nms

__all__ = ["Detections", "postprocess", "scale_boxes"]


@dataclass
class Detections:
    """Detections of one image.

    boxes: (K, 4) xyxy pixels (network-input or original-image pixels, see producer).
    scores: (K,) confidence.  labels: (K,) int64 contiguous class indices.
    class_names: names for the labels, when known.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    class_names: list[str] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.scores.numel())

    @property
    def names(self) -> list[str]:
        """Class name of every detection (``str(label)`` when names are unknown)."""
        if self.class_names is None:
            return [str(int(i)) for i in self.labels]
        return [self.class_names[int(i)] for i in self.labels]

    def to(self, device) -> "Detections":
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device),
                          self.class_names)

    def to_list(self) -> list[dict]:
        """JSON-ready list of ``{"box": [x1, y1, x2, y2], "score", "label", "name"}``."""
        names = self.names
        return [{"box": [round(float(v), 2) for v in b], "score": round(float(s), 5),
                 "label": int(lab), "name": n}
                for b, s, lab, n in zip(self.boxes.tolist(), self.scores.tolist(),
                                        self.labels.tolist(), names)]


def scale_boxes(boxes: Tensor, scale_xy: tuple[float, float], clip_hw: tuple[int, int] | None
                ) -> Tensor:
    """Multiply x by ``scale_xy[0]`` and y by ``scale_xy[1]``; optionally clip to (h, w)."""
    s = boxes.new_tensor([scale_xy[0], scale_xy[1], scale_xy[0], scale_xy[1]])
    out = boxes * s
    if clip_hw is not None:
        h, w = clip_hw
        out[:, 0::2] = out[:, 0::2].clamp(0, w)
        out[:, 1::2] = out[:, 1::2].clamp(0, h)
    return out


@torch.no_grad()
def postprocess(scores: Tensor, boxes: Tensor, conf_thresh: float, iou_thresh: float,
                max_det: int = 500, class_names: list[str] | None = None,
                classes: list[int] | None = None, pre_nms_topk: int | None = 30_000
                ) -> list[Detections]:
    """Batched scores (B, A, C) and boxes (B, A, 4) -> list of :class:`Detections`.

    classes: keep only these class indices (applied before NMS).
    """
    out = []
    if classes is not None:
        keep_cls = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
        keep_cls[torch.as_tensor(classes, dtype=torch.long, device=scores.device)] = True
        scores = scores * keep_cls
    for s, b in zip(scores, boxes):
        kb, ks, kl = multiclass_nms(s, b, conf_thresh, iou_thresh, max_det, pre_nms_topk)
        out.append(Detections(kb, ks, kl, class_names))
    return out
