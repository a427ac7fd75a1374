"""DAMO-YOLO training criterion: AlignedOTA targets + QFL/GIoU/DFL with the release weights.

``assigner``: any of :mod:`damoyolo.assign` (AlignedOTA by default); its soft targets feed
the QFL, the losses are the same whichever assigns.

Normalisation (as in the release):

* QFL is summed over all anchors and divided by the mean number of positives per rank
  (``max(mean_ranks(num_pos), 1)``).
* GIoU and DFL are weighted per positive by its detached max class probability and divided
  by ``max(mean_ranks(sum of weights), 1)`` (DFL also by 4 sides).

DDP safety: the two normalisers are reduced with **one** ``all_reduce`` issued
unconditionally whenever ``torch.distributed`` is initialised, so every rank takes the
same collective path whether or not it has positives (a rank without positives gets
zero box losses that still touch every box parameter).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..assign import AlignedOTA, pad_targets
from ..ops.boxes import bbox_to_distance
from ..runtime.dist import reduce_mean
from .gfocal import distribution_focal_loss, giou_loss, quality_focal_loss

__all__ = ["DAMOYOLOCriterion", "reduce_mean"]


class DAMOYOLOCriterion:
    """Callable ``criterion(outputs, targets) -> dict`` of named scalar losses.

    head: the model's ZeroHead (only its ``flatten``/``decode_distances`` and ``reg_max``
    are used; no parameters).  targets: list (len B) of dicts with ``boxes`` (N, 4) xyxy
    input pixels and ``labels`` (N,) int64.  The returned dict has ``loss`` (the sum to
    back-propagate), ``loss_qfl``, ``loss_giou``, ``loss_dfl`` and ``num_pos`` (detached).
    """

    loss_names = ("loss", "loss_qfl", "loss_giou", "loss_dfl")  # its losses (num_pos is a count)

    def __init__(self, head, qfl_weight: float = 1.0, giou_weight: float = 2.0,
                 dfl_weight: float = 0.25, beta: float = 2.0, assigner=None):
        self.head = head
        self.qfl_weight = qfl_weight
        self.giou_weight = giou_weight
        self.dfl_weight = dfl_weight
        self.beta = beta
        # the assigner's class count (its background label) is the head's, given once here
        self.assigner = assigner or AlignedOTA(head.num_classes)
        self.assigner.num_classes = head.num_classes

    def __call__(self, outputs, targets: list[dict]) -> dict[str, Tensor]:
        cls, reg, priors = self.head.flatten(outputs)
        return self.compute(cls, reg, priors, targets)

    def compute(self, cls: Tensor, reg: Tensor, priors: Tensor, targets: list[dict]
                ) -> dict[str, Tensor]:
        """cls (B, A, C) logits, reg (B, A, 4, R+1) DFL logits, priors (A, 4)."""
        b, a, c = cls.shape
        rmax = reg.shape[-1] - 1
        cls = cls.float()
        reg = reg.float()
        boxes = self.head.decode_distances(reg, priors)  # (B, A, 4)
        gt_boxes, gt_labels, gt_mask = pad_targets(targets, device=cls.device)
        if c != self.assigner.num_classes:
            raise ValueError(f"{c} class logits for a criterion of {self.assigner.num_classes} "
                             f"classes (the head's at construction)")
        asg = self.assigner(cls.detach(), boxes.detach(), priors, gt_boxes, gt_labels, gt_mask)

        fg = asg.fg.reshape(-1)
        cls_f = cls.reshape(-1, c)
        pos = fg.nonzero().squeeze(1)
        num_pos = torch.tensor(float(pos.numel()), device=cls.device)
        # weights of the box losses: detached max class probability of each positive
        w = cls_f.detach()[pos].sigmoid().max(1).values if pos.numel() else cls_f.new_zeros(0)
        norms = reduce_mean(torch.stack([num_pos, w.sum()]))
        n_pos = norms[0].clamp(min=1.0)
        n_w = norms[1].clamp(min=1.0)

        qfl = quality_focal_loss(cls_f, asg.labels.reshape(-1), asg.ious.reshape(-1),
                                 self.beta).sum() / n_pos
        if pos.numel():
            pri = priors.unsqueeze(0).expand(b, a, 4).reshape(-1, 4)[pos]
            tgt = asg.boxes.reshape(-1, 4)[pos]
            giou = (giou_loss(boxes.reshape(-1, 4)[pos], tgt) * w).sum() / n_w
            stride = pri[:, 2:3]
            dfl_t = bbox_to_distance(pri[:, :2] / stride, tgt / stride, max_dist=rmax, eps=0.1)
            dfl = (distribution_focal_loss(reg.reshape(-1, 4, rmax + 1)[pos].reshape(-1, rmax + 1),
                                           dfl_t.reshape(-1))
                   * w.repeat_interleave(4)).sum() / (4.0 * n_w)
        else:
            zero = reg.sum() * 0.0
            giou, dfl = zero, zero.clone()
        qfl = qfl * self.qfl_weight
        giou = giou * self.giou_weight
        dfl = dfl * self.dfl_weight
        return {"loss": qfl + giou + dfl, "loss_qfl": qfl, "loss_giou": giou, "loss_dfl": dfl,
                "num_pos": num_pos}
