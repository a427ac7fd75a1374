"""Cost model of the search-time TinyNAS network, computed from the structure alone.

The search-time network is the plain (non re-parameterised) TinyNAS backbone in *search form*
(see :mod:`damoyolo.nas.space`): a stem convolution followed by super-blocks of ``L`` residual
units.  Every unit of a ``k1kx`` block is ``conv1`` (1x1, in->btn) then ``conv2`` (KxK, btn->out,
carrying the block stride on the first unit); a ``kxkx`` unit has a KxK ``conv1`` instead.  A unit
whose input and output channels differ has a 1x1 projection on its shortcut, applied after the
shortcut's 2x2 average-pool when the unit has stride 2.  Every convolution is followed by a
BatchNorm (2 parameters per channel).  No weights are allocated here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..models.backbones.structure import K1KX, KXKX, STEM, BlockSpec

__all__ = ["ConvOp", "iter_units", "conv_ops", "count_layers", "count_params", "count_macs",
           "count_conv_macs"]


@dataclass(frozen=True)
class ConvOp:
    """One dense convolution of the network.

    in_channels / out_channels: channels; kernel: square kernel size; stride: 1 or 2;
    resolution: height (= width) of the input feature map in pixels;
    elmt_fused: 1 when a residual addition is fused into this convolution (the last conv of a
    unit), 0 otherwise — the flag the official latency tables are keyed on.
    """

    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    resolution: int
    elmt_fused: int = 0

    @property
    def out_resolution(self) -> int:
        return self.resolution // self.stride

    @property
    def params(self) -> int:
        """Weights of the convolution plus its BatchNorm's scale and shift."""
        return self.in_channels * self.out_channels * self.kernel ** 2 + 2 * self.out_channels

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the convolution on one image."""
        return self.in_channels * self.out_channels * self.kernel ** 2 * self.out_resolution ** 2


@dataclass(frozen=True)
class Unit:
    """One residual unit of a super-block (or the stem, with ``btn == 0``)."""

    kind: str
    in_channels: int
    out_channels: int
    btn: int
    kernel: int
    stride: int


def iter_units(blocks: Sequence[BlockSpec]) -> list[Unit]:
    """Expand a structure into its units: the stem, then ``L`` units per super-block."""
    units: list[Unit] = []
    for b in blocks:
        if b.kind == STEM:
            units.append(Unit(STEM, b.in_channels, b.out_channels, 0, b.kernel, b.stride))
            continue
        for j in range(b.num_layers):
            units.append(Unit(b.kind, b.in_channels if j == 0 else b.out_channels, b.out_channels,
                              b.btn, b.kernel, b.stride if j == 0 else 1))
    return units


def conv_ops(blocks: Sequence[BlockSpec], resolution: int) -> list[ConvOp]:
    """All convolutions of the search-time network for a ``resolution`` x ``resolution`` input,
    in execution order (stem, then per unit conv1, conv2, shortcut projection)."""
    ops: list[ConvOp] = []
    res = int(resolution)
    for u in iter_units(blocks):
        if u.kind == STEM:
            ops.append(ConvOp(u.in_channels, u.out_channels, u.kernel, u.stride, res, 0))
            res //= u.stride
            continue
        k1 = 1 if u.kind == K1KX else u.kernel
        if u.kind not in (K1KX, KXKX):
            raise ValueError(f"unsupported block kind {u.kind!r}")
        ops.append(ConvOp(u.in_channels, u.btn, k1, 1, res, 0))
        ops.append(ConvOp(u.btn, u.out_channels, u.kernel, u.stride, res, 1))
        out_res = res // u.stride
        if u.in_channels != u.out_channels:
            ops.append(ConvOp(u.in_channels, u.out_channels, 1, 1, out_res, 0))
        res = out_res
    return ops


def count_layers(blocks: Sequence[BlockSpec]) -> int:
    """Depth as counted by MAE-NAS budgets: 1 for the stem, 2 per residual unit."""
    return sum(1 if b.kind == STEM else 2 * b.num_layers for b in blocks)


def count_params(blocks: Sequence[BlockSpec]) -> int:
    """Parameters of the search-time network (convolutions + BatchNorm affine)."""
    return sum(op.params for op in conv_ops(blocks, 64))


def count_conv_macs(blocks: Sequence[BlockSpec], resolution: int) -> int:
    """Convolution multiply-accumulates only, for one ``resolution`` x ``resolution`` input."""
    return sum(op.macs for op in conv_ops(blocks, resolution))


def count_macs(blocks: Sequence[BlockSpec], resolution: int) -> int:
    """Operations of the search-time network for one image, counted as MAE-NAS counts them:
    convolution MACs, plus per output element 2 for each BatchNorm and 1 for each ReLU (after
    the stem, after ``conv1``, after the residual sum and after a shortcut projection), plus one
    per input element of a stride-2 shortcut's average-pool."""
    total = 0
    res = int(resolution)
    for u in iter_units(blocks):
        if u.kind == STEM:
            out_res = res // u.stride
            total += (u.in_channels * u.kernel ** 2 + 3) * u.out_channels * out_res ** 2
            res = out_res
            continue
        k1 = 1 if u.kind == K1KX else u.kernel
        out_res = res // u.stride
        total += (u.in_channels * k1 * k1 + 3) * u.btn * res ** 2          # conv1 + BN + ReLU
        total += (u.btn * u.kernel ** 2 + 3) * u.out_channels * out_res ** 2  # conv2 + BN + sum ReLU
        if u.stride == 2:
            total += u.in_channels * res ** 2                                # shortcut avg-pool
        if u.in_channels != u.out_channels:
            total += (u.in_channels + 3) * u.out_channels * out_res ** 2    # projection + BN + ReLU
        res = out_res
    return total
