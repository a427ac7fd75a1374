"""Building blocks shared by the backbones and the neck.

Every BatchNorm uses eps=1e-3 and momentum=0.03 (the values the official
detector sets on all of its BatchNorm layers).  Blocks that can be simplified
for deployment implement ``reparameterize()`` (see :mod:`damoyolo.models.reparam`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ConfigError
from ..ops import nchw_on_cpu_eager
from ..ops.depthwise import DepthwiseConv2d

__all__ = [
    "BN_EPS",
    "BN_MOMENTUM",
    "get_activation",
    "make_divisible",
    "ConvBNAct",
    "RepConv",
    "Focus",
    "SPPBottleneck",
    "MobileBlock",
    "DWSepConv",
]

BN_EPS = 1e-3
BN_MOMENTUM = 0.03

_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    # not in place: autograd would copy the input of an in-place SiLU to keep it for the
    # backward pass (a full copy of every activation map in training)
    "silu": lambda: nn.SiLU(),
    "lrelu": lambda: nn.LeakyReLU(0.1, inplace=True),
    "identity": nn.Identity,
    "none": nn.Identity,
}


def get_activation(name: str | None) -> nn.Module:
    """A fresh activation module by name (``relu``, ``silu``, ``lrelu``, ``identity``)."""
    if name is None:
        return nn.Identity()
    try:
        return _ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ConfigError(f"unknown activation {name!r}; valid: {sorted(_ACTIVATIONS)}") from None


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to a multiple of ``divisor`` without going below 90% of ``v``."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class ConvBNAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm -> activation, 'same' padding.

    ``reparameterize()`` folds the BatchNorm into the convolution (the conv gains a bias).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1,
                 stride: int = 1, groups: int = 1, act: str | None = "relu"):
        super().__init__()
        if groups > 1 and groups == in_channels == out_channels:
            # depthwise: nn.Conv2d with a faster weight gradient in CPU training
            self.conv: nn.Conv2d = DepthwiseConv2d(in_channels, kernel_size, stride,
                                                   (kernel_size - 1) // 2)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                                  (kernel_size - 1) // 2, groups=groups, bias=False)
        self.bn: nn.Module = _bn(out_channels)
        self.act = get_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))

    def equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        """(weight, bias) of the single convolution equal to conv followed by BN."""
        w = self.conv.weight
        b = self.conv.bias if self.conv.bias is not None else torch.zeros(
            w.shape[0], dtype=w.dtype, device=w.device)
        if isinstance(self.bn, nn.BatchNorm2d):
            std = (self.bn.running_var + self.bn.eps).sqrt()
            t = self.bn.weight / std
            w = w * t.reshape(-1, 1, 1, 1)
            b = self.bn.bias + (b - self.bn.running_mean) * t
        return w, b

    @torch.no_grad()
    def reparameterize(self) -> None:
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        w, b = self.equivalent_kernel_bias()
        conv = nn.Conv2d(self.conv.in_channels, self.conv.out_channels, self.conv.kernel_size,
                         self.conv.stride, self.conv.padding, groups=self.conv.groups,
                         bias=True).to(w.device, w.dtype)
        conv.weight.copy_(w)
        conv.bias.copy_(b)
        self.conv = conv
        self.bn = nn.Identity()


class RepConv(nn.Module):
    """RepVGG-style 3x3 block: (3x3 conv+BN) + (1x1 conv+BN), then activation.

    No identity branch (as in DAMO-YOLO).  ``reparameterize()`` merges both branches
    into one 3x3 convolution with bias.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 act: str | None = "relu"):
        super().__init__()
        self.dense: nn.Module | None = ConvBNAct(in_channels, out_channels, 3, stride, act=None)
        self.pointwise: nn.Module | None = ConvBNAct(in_channels, out_channels, 1, stride,
                                                     act=None)
        self.fused: nn.Conv2d | None = None
        self.act = get_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        return self.act(self.dense(x) + self.pointwise(x))

    @torch.no_grad()
    def reparameterize(self) -> None:
        if self.fused is not None:
            return
        k3, b3 = self.dense.equivalent_kernel_bias()
        k1, b1 = self.pointwise.equivalent_kernel_bias()
        conv = self.dense.conv
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, 3, conv.stride, 1,
                          bias=True).to(k3.device, k3.dtype)
        fused.weight.copy_(k3 + F.pad(k1, [1, 1, 1, 1]))
        fused.bias.copy_(b3 + b1)
        self.fused = fused
        self.dense = None
        self.pointwise = None


class Focus(nn.Module):
    """Space-to-depth (2x2 -> channels) followed by a ConvBNAct.

    Channel order of the rearrangement: top-left, bottom-left, top-right, bottom-right.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1,
                 act: str | None = "relu"):
        super().__init__()
        self.conv = ConvBNAct(in_channels * 4, out_channels, kernel_size, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2],
                       x[..., 1::2, 1::2]], dim=1)
        return self.conv(x)


class SPPBottleneck(nn.Module):
    """1x1 reduce -> max-pools (5, 9, 13) concatenated with the input -> 1x1 (YOLOv3-SPP)."""

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_sizes: tuple[int, ...] = (5, 9, 13), act: str | None = "silu"):
        super().__init__()
        hidden = in_channels // 2
        self.conv1 = ConvBNAct(in_channels, hidden, 1, act=act)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernel_sizes)
        self.conv2 = ConvBNAct(hidden * (len(kernel_sizes) + 1), out_channels, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + self._pooled(x), dim=1))

    def _pooled(self, x: Tensor) -> list[Tensor]:
        """The max-pools of ``x``.  On a CPU an NCHW map is pooled in channels_last: torch's
        NCHW max-pool kernel is 4-8x slower there (forward and backward of the three pools,
        batch 8, bfloat16: 16.5 against 4.1 ms on damoyolo-t's 192-channel 8x8 map at 256 px,
        204 against 42 ms on a 256-channel 20x20 map).  The values are the same, the gradients
        the same up to the order of the additions.  Not while exporting or tracing: the graph
        stays the official one."""
        if nchw_on_cpu_eager(x):
            xc = x.contiguous(memory_format=torch.channels_last)
            return [p(xc).contiguous() for p in self.pools]
        return [p(x) for p in self.pools]


class MobileBlock(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise KxK -> 1x1 project (no act), residual
    when the stride is 1 and channels are unchanged.  Hidden width is
    ``make_divisible(ceil(out_channels * expand_ratio))``."""

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: float,
                 stride: int = 1, act: str | None = "silu", kernel_size: int = 5):
        super().__init__()
        hidden = make_divisible(math.ceil(out_channels * expand_ratio))
        self.expand = ConvBNAct(in_channels, hidden, 1, act=act)
        self.dw = ConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden, act=act)
        self.project = ConvBNAct(hidden, out_channels, 1, act=None)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.residual else y


class DWSepConv(nn.Module):
    """Depthwise KxK conv+BN+act followed by pointwise 1x1 conv+BN+act."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, act: str | None = "silu"):
        super().__init__()
        self.dw = ConvBNAct(in_channels, in_channels, kernel_size, stride, groups=in_channels,
                            act=act)
        self.pw = ConvBNAct(in_channels, out_channels, 1, act=act)
        # the release initialises both convolutions of this block (its neck down-sampler)
        # with Kaiming-normal fan_out (ReLU gain), unlike its other convolutions
        for conv in (self.dw.conv, self.pw.conv):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.pw(self.dw(x))
