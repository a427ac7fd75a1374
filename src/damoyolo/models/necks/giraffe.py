"""GiraffeNeckV2: the Efficient RepGFPN neck of DAMO-YOLO.

Different channels per scale, queen-fusion (each node fuses same-level,
lower-level-downsampled and upper-level-upsampled features) without the extra
upsampling of GiraffeDet, and CSP fusion blocks whose inner units are a
re-parameterisable 3x3 RepConv followed by a 3x3 conv (ELAN-style: every unit's
output is concatenated before the final 1x1).  Nano models use depthwise
separable down-samplers and inverted-residual units instead.

Nodes (x2, x1, x0 = backbone features at stride 8, 16, 32)::

    merge_3 = CSP(cat[x0, down(x1)])               stride 32
    merge_4 = CSP(cat[x1, down(x2), up(merge_3)])  stride 16
    merge_5 = CSP(cat[x2, up(merge_4)])            stride 8   -> P3
    merge_7 = CSP(cat[merge_4, down(merge_5)])     stride 16  -> P4
    merge_6 = CSP(cat[merge_3, down(merge_4), down(merge_7)])  stride 32 -> P5
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...config import ConfigError
from ..layers import ConvBNAct, DWSepConv, MobileBlock, RepConv

__all__ = ["GiraffeNeckV2", "CSPFusion", "RepUnit"]


class RepUnit(nn.Module):
    """RepConv 3x3 (in -> hidden) then ConvBNAct 3x3 (hidden -> out), plus the input."""

    def __init__(self, channels: int, hidden_ratio: float, act: str):
        super().__init__()
        hidden = int(channels * hidden_ratio)
        self.rep = RepConv(channels, hidden, 1, act=act)
        self.conv = ConvBNAct(hidden, channels, 3, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(self.rep(x))


class CSPFusion(nn.Module):
    """CSP fusion block: two 1x1 splits, a chain of ``n`` units on the second split,
    concat of the first split and every unit's output, 1x1 to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, n: int, hidden_ratio: float,
                 act: str, depthwise: bool):
        super().__init__()
        first = out_channels // 2
        mid = out_channels - first
        self.split1 = ConvBNAct(in_channels, first, 1, act=act)
        self.split2 = ConvBNAct(in_channels, mid, 1, act=act)
        if depthwise:
            units = [MobileBlock(mid, mid, 3.0, 1, act=act, kernel_size=5) for _ in range(n)]
        else:
            units = [RepUnit(mid, hidden_ratio, act) for _ in range(n)]
        self.units = nn.ModuleList(units)
        self.fuse = ConvBNAct(mid * n + first, out_channels, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        outs = [self.split1(x)]
        y = self.split2(x)
        for unit in self.units:
            y = unit(y)
            outs.append(y)
        return self.fuse(torch.cat(outs, dim=1))


class GiraffeNeckV2(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: list[int], depth: float = 1.0,
                 hidden_ratio: float = 1.0, act: str = "relu", depthwise: bool = False):
        super().__init__()
        if len(in_channels) != 3 or len(out_channels) != 3:
            raise ConfigError("GiraffeNeckV2 takes exactly three input and output levels")
        c2, c1, c0 = in_channels
        o2, o1, o0 = out_channels
        n = round(3 * depth)

        def down(c: int) -> nn.Module:
            return DWSepConv(c, c, 3, 2, act=act) if depthwise else ConvBNAct(c, c, 3, 2, act=act)

        def fusion(cin: int, cout: int) -> CSPFusion:
            return CSPFusion(cin, cout, n, hidden_ratio, act, depthwise)

        self.bu_conv13 = down(c1)
        self.merge_3 = fusion(c1 + c0, c0)
        self.bu_conv24 = down(c2)
        self.merge_4 = fusion(c2 + c1 + c0, c1)
        self.merge_5 = fusion(c1 + c2, o2)
        self.bu_conv57 = down(o2)
        self.merge_7 = fusion(o2 + c1, o1)
        self.bu_conv46 = down(c1)
        self.bu_conv76 = down(o1)
        self.merge_6 = fusion(c1 + o1 + c0, o0)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.out_channels = [o2, o1, o0]

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        x2, x1, x0 = feats
        x3 = self.merge_3(torch.cat([x0, self.bu_conv13(x1)], 1))
        x4 = self.merge_4(torch.cat([x1, self.bu_conv24(x2), self.upsample(x3)], 1))
        x5 = self.merge_5(torch.cat([x2, self.upsample(x4)], 1))
        x7 = self.merge_7(torch.cat([x4, self.bu_conv57(x5)], 1))
        x6 = self.merge_6(torch.cat([x3, self.bu_conv46(x4), self.bu_conv76(x7)], 1))
        return [x5, x7, x6]
