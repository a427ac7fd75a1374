"""ZeroHead: one projection per task and level, GFL outputs.

Per level ``i`` (stride 8, 16, 32): a class projection (``num_classes`` logits) and
a box projection (``4 * (reg_max + 1)`` DFL logits, side order l, t, r, b, bin
fastest) scaled by a learnable per-level scalar.  No stacked convolutions and no
activation (the class output gets a sigmoid at decode time).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...ops.boxes import distance_to_bbox

__all__ = ["ZeroHead", "HeadOutput", "make_priors", "flatten_dfl", "decode_dfl"]


class HeadOutput(NamedTuple):
    """Raw head outputs, one tensor per level.

    cls: (B, C, H_i, W_i) class logits.
    reg: (B, 4 * (reg_max + 1), H_i, W_i) DFL logits after the per-level scale, float32.
    """

    cls: list[Tensor]
    reg: list[Tensor]


class Scale(nn.Module):
    def __init__(self, value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def make_priors(sizes: list[tuple[int, int]], strides: tuple[int, ...], device=None,
                dtype=torch.float32) -> Tensor:
    """Anchor points of all levels: (A, 4) rows ``(x, y, stride, stride)``.

    The point of cell (row, col) is ``(col * stride, row * stride)`` (no half-cell
    offset, as in the release); levels in stride order, row-major inside a level.
    """
    out = []
    for (h, w), s in zip(sizes, strides):
        ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype) * s,
                                torch.arange(w, device=device, dtype=dtype) * s, indexing="ij")
        st = torch.full_like(xs, float(s))
        out.append(torch.stack([xs, ys, st, st], dim=-1).reshape(-1, 4))
    return torch.cat(out, dim=0)


def flatten_dfl(reg: Sequence[Tensor], reg_max: int, batch_of: Tensor | None = None) -> Tensor:
    """Per-level DFL logits (B, 4*(R+1), H_i, W_i), channel = side*(R+1) + bin (sides l, t,
    r, b) -> (B, A, 4, R+1), levels concatenated in stride order, row-major per level.

    The result is a permuted view (not contiguous).  ``batch_of``: a tensor whose first
    dimension is B (the ONNX export passes its input, so a dynamic batch is read from it).
    """
    r = torch.cat([x.flatten(2) for x in reg], dim=2)                # (B, 4(R+1), A)
    b = (r if batch_of is None else batch_of).shape[0]
    return r.reshape(b, 4, reg_max + 1, -1).permute(0, 3, 1, 2)      # (B, A, 4, R+1)


def decode_dfl(reg: Tensor, points: Tensor, stride: Tensor, proj: Tensor) -> Tensor:
    """The DFL decode: logits (B, A, 4, R+1) -> xyxy boxes (B, A, 4) in input pixels.

    Each side's distance is the expectation of the softmax over the bins ``proj`` (R+1,)
    (``0, 1, ..., R``), times the anchor's stride; points (A, 2) and stride (A, 1) are the
    columns of :func:`make_priors`.  Used by :meth:`ZeroHead.decode`, the criterion, the
    ONNX export and the decode of official-style per-level outputs.
    """
    dist = F.softmax(reg, dim=-1).matmul(proj) * stride              # (B, A, 4)
    return distance_to_bbox(points, dist)


class ZeroHead(nn.Module):
    def __init__(self, in_channels: list[int], num_classes: int = 80, reg_max: int = 16,
                 kernel_size: int = 3, strides: tuple[int, ...] = (8, 16, 32),
                 prior_prob: float = 0.01):
        super().__init__()
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.strides = tuple(strides)
        pad = kernel_size // 2
        self.cls_preds = nn.ModuleList(
            nn.Conv2d(c, num_classes, kernel_size, padding=pad) for c in in_channels)
        self.reg_preds = nn.ModuleList(
            nn.Conv2d(c, 4 * (reg_max + 1), kernel_size, padding=pad) for c in in_channels)
        self.scales = nn.ModuleList(Scale(1.0) for _ in in_channels)
        self.prior_prob = prior_prob
        self.init_weights()

    def init_weights(self) -> None:
        bias_cls = -math.log((1 - self.prior_prob) / self.prior_prob)
        for conv in self.cls_preds:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.constant_(conv.bias, bias_cls)
        for conv in self.reg_preds:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.constant_(conv.bias, 0.0)

    def reset_classes(self, num_classes: int) -> None:
        """Replace the class projections (fine-tuning on a new label set)."""
        k = self.cls_preds[0].kernel_size[0]
        dev = self.cls_preds[0].weight.device
        self.cls_preds = nn.ModuleList(
            nn.Conv2d(c.in_channels, num_classes, k, padding=k // 2).to(dev)
            for c in self.cls_preds)
        self.num_classes = num_classes
        bias_cls = -math.log((1 - self.prior_prob) / self.prior_prob)
        for conv in self.cls_preds:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.constant_(conv.bias, bias_cls)

    def forward(self, feats: list[Tensor]) -> HeadOutput:
        cls = [conv(x) for conv, x in zip(self.cls_preds, feats)]
        reg = [scale(conv(x)).float() for conv, scale, x in zip(self.reg_preds, self.scales, feats)]
        return HeadOutput(cls, reg)

    def flatten(self, out: HeadOutput) -> tuple[Tensor, Tensor, Tensor]:
        """Concatenate levels: cls logits (B, A, C), DFL logits (B, A, 4, reg_max+1), priors (A, 4)."""
        cls = torch.cat([c.flatten(2).transpose(1, 2) for c in out.cls], dim=1)
        reg = flatten_dfl(out.reg, self.reg_max).contiguous()
        priors = make_priors([tuple(c.shape[-2:]) for c in out.cls], self.strides,
                             device=reg.device)
        return cls, reg, priors

    def decode_distances(self, reg: Tensor, priors: Tensor) -> Tensor:
        """DFL logits (B, A, 4, R+1) -> xyxy boxes (B, A, 4) in input pixels."""
        proj = torch.arange(self.reg_max + 1, dtype=reg.dtype, device=reg.device)
        return decode_dfl(reg, priors[:, :2], priors[:, 2:3], proj)

    def decode(self, out: HeadOutput) -> tuple[Tensor, Tensor]:
        """Raw outputs -> (scores (B, A, C) sigmoid probabilities, boxes (B, A, 4) xyxy pixels)."""
        cls, reg, priors = self.flatten(out)
        return cls.float().sigmoid(), self.decode_distances(reg, priors)
