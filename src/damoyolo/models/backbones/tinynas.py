"""TinyNAS (MAE-NAS) backbones built from a structure description.

Three families, as released with DAMO-YOLO:

* :class:`TinyNASRes` -- ResNet-like stages of residual units (k1kx: 1x1 then KxK;
  kxkx: KxK then KxK), RepConv for the second conv when ``reparam``.
* :class:`TinyNASCSP` -- the same units wrapped in CSP stages (strided 3x3
  down-sampler, split into a shortcut and a residual path, concat, 1x1 fuse).
  A stride-1 structure block joins the stage of the block before it.
* :class:`TinyNASMob` -- mobile inverted-residual units (5x5 depthwise); the
  expansion ratio grows with depth (3.5 + 0.5 * (block index - 1)).

``stages[0]`` is the stem; ``out_indices`` select which stages feed the neck.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...config import ConfigError
from ...ops import nchw_on_cpu_eager
from .structure import KXKX, STEM, BlockSpec, StructureError
from ..layers import ConvBNAct, Focus, MobileBlock, RepConv, SPPBottleneck, get_activation

__all__ = ["ResUnit", "TinyNASRes", "TinyNASCSP", "TinyNASMob", "BACKBONES"]


class ResUnit(nn.Module):
    """Residual unit: conv1 (1x1 or KxK) + act, conv2 (KxK, RepConv when ``reparam``),
    add the (projected) input unless the stride is 2, act."""

    def __init__(self, in_channels: int, out_channels: int, btn: int, kernel: int, stride: int,
                 act: str, reparam: bool, kxkx: bool):
        super().__init__()
        self.conv1 = ConvBNAct(in_channels, btn, kernel if kxkx else 1, 1, act=None)
        if reparam:
            if kernel != 3:
                raise StructureError(f"RepConv needs kernel 3, structure gives {kernel}")
            self.conv2: nn.Module = RepConv(btn, out_channels, stride, act=None)
        else:
            self.conv2 = ConvBNAct(btn, out_channels, kernel, stride, act=None)
        self.proj = (ConvBNAct(in_channels, out_channels, 1, 1, act=None)
                     if in_channels != out_channels and stride != 2 else None)
        self.act = get_activation(act)
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.act(self.conv1(x)))
        if self.stride != 2:
            y = y + (self.proj(x) if self.proj is not None else x)
        return self.act(y)


def _stem(spec: BlockSpec, use_focus: bool, act: str, stride_when_plain: int) -> nn.Module:
    if spec.kind != STEM:
        raise StructureError("structure must start with a stem block")
    if use_focus:
        return Focus(spec.in_channels, spec.out_channels, spec.kernel, act=act)
    return ConvBNAct(spec.in_channels, spec.out_channels, spec.kernel, stride_when_plain, act=act)


class _TinyNAS(nn.Module):
    stages: nn.ModuleList
    out_indices: tuple[int, ...]
    stage_channels: list[int]

    @property
    def out_channels(self) -> list[int]:
        return [self.stage_channels[i] for i in self.out_indices]

    def _check_indices(self) -> None:
        bad = [i for i in self.out_indices if not 0 <= i < len(self.stages)]
        if bad:
            raise ConfigError(f"out_indices {bad} out of range for {len(self.stages)} stages")

    def init_weights(self) -> None:
        """The release's initialisation: torch's default for the ResNet-like and CSP-like
        families (nothing to redo after construction)."""

    # CPU speed: run the first this many stages (the stem and the first stage: large maps,
    # few channels) in channels_last and hand NCHW on; 0: off.  Set by the trainer for the
    # presets that train in NCHW on a CPU (engine.policy.use_channels_last_stem).  Not a
    # parameter: a model loaded or built afresh runs all in its own format.
    channels_last_stages: int = 0

    def forward(self, x: Tensor) -> list[Tensor]:
        n = self.channels_last_stages
        mixed = n > 0 and nchw_on_cpu_eager(x)
        feats = []
        for i, stage in enumerate(self.stages):
            if mixed and i == 0:
                x = x.contiguous(memory_format=torch.channels_last)
            x = stage(x)
            if mixed and i == n - 1:
                x = x.contiguous()
            if i in self.out_indices:
                feats.append(x)
        return feats


class TinyNASRes(_TinyNAS):
    def __init__(self, structure: list[BlockSpec], out_indices=(2, 4, 5), with_spp: bool = True,
                 use_focus: bool = True, act: str = "relu", reparam: bool = True):
        super().__init__()
        self.out_indices = tuple(out_indices)
        stages = [_stem(structure[0], use_focus, act, structure[0].stride)]
        for idx, spec in enumerate(structure[1:], start=1):
            units: list[nn.Module] = []
            for j in range(spec.num_layers):
                cin = spec.in_channels if j == 0 else spec.out_channels
                units.append(ResUnit(cin, spec.out_channels, spec.btn, spec.kernel,
                                     spec.stride if j == 0 else 1, act, reparam,
                                     spec.kind == KXKX))
                if j == 0 and with_spp and idx == len(structure) - 1:
                    units.append(SPPBottleneck(spec.out_channels, spec.out_channels, act="silu"))
            stages.append(nn.Sequential(*units))
        self.stages = nn.ModuleList(stages)
        self.stage_channels = [s.out_channels for s in structure]
        self._check_indices()


class CSPStage(nn.Module):
    """Strided 3x3 down-sampler (+SPP), then CSP: shortcut 1x1 || start 1x1 -> units;
    concat(units, shortcut) -> 1x1 fuse.  Wrapper convs use ReLU as in the release."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int,
                 units: list[nn.Module], with_spp: bool, wrapper_act: str = "relu"):
        super().__init__()
        self.down = ConvBNAct(in_channels, hidden * 2, 3, 2, act=wrapper_act)
        self.spp = SPPBottleneck(hidden * 2, hidden * 2, act="silu") if with_spp else None
        self.units = nn.ModuleList(units)
        if units:
            self.start = ConvBNAct(hidden * 2, hidden, 1, act=wrapper_act)
            self.shortcut = ConvBNAct(hidden * 2, out_channels // 2, 1, act=wrapper_act)
            self.fuse = ConvBNAct(out_channels, out_channels, 1, act=wrapper_act)

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x)
        if self.spp is not None:
            x = self.spp(x)
        if len(self.units) == 0:
            return x
        shortcut = self.shortcut(x)
        x = self.start(x)
        for unit in self.units:
            x = unit(x)
        return self.fuse(torch.cat((x, shortcut), dim=1))


class TinyNASCSP(_TinyNAS):
    def __init__(self, structure: list[BlockSpec], out_indices=(2, 3, 4), with_spp: bool = True,
                 use_focus: bool = True, act: str = "silu", reparam: bool = True):
        super().__init__()
        self.out_indices = tuple(out_indices)
        stages: list[nn.Module] = [_stem(structure[0], use_focus, act, structure[0].stride)]
        channels = [structure[0].out_channels]
        # group structure blocks into stages: a stride-1 block joins the previous stage
        groups: list[list[BlockSpec]] = []
        for spec in structure[1:]:
            if spec.stride == 1 and groups:
                groups[-1].append(spec)
            else:
                groups.append([spec])
        for gi, group in enumerate(groups):
            units: list[nn.Module] = []
            for spec in group:
                n = spec.num_layers - 1 if spec.stride == 2 else spec.num_layers
                half = spec.out_channels // 2
                for j in range(n):
                    cin = spec.in_channels // 2 if (spec.stride == 1 and j == 0) else half
                    units.append(ResUnit(cin, half, spec.btn, spec.kernel, 1, act, reparam,
                                         spec.kind == KXKX))
            first, last = group[0], group[-1]
            stages.append(CSPStage(first.in_channels, first.out_channels // 2, last.out_channels,
                                   units, with_spp and gi == len(groups) - 1))
            channels.append(last.out_channels)
        self.stages = nn.ModuleList(stages)
        self.stage_channels = channels
        self._check_indices()


class TinyNASMob(_TinyNAS):
    def __init__(self, structure: list[BlockSpec], out_indices=(2, 4, 5), with_spp: bool = True,
                 use_focus: bool = False, act: str = "silu", reparam: bool = False):
        super().__init__()
        self.out_indices = tuple(out_indices)
        # without Focus the stem is a stride-2 conv from the RGB image (as released)
        stem_spec = structure[0]
        stages = [_stem(stem_spec, use_focus, act, 2)]
        for idx, spec in enumerate(structure[1:], start=1):
            ratio = 3.5 + 0.5 * (idx - 1) if spec.kind != KXKX else 2.5
            units: list[nn.Module] = []
            for j in range(spec.num_layers):
                cin = spec.in_channels if j == 0 else spec.out_channels
                units.append(MobileBlock(cin, spec.out_channels, ratio,
                                         spec.stride if j == 0 else 1, act=act, kernel_size=5))
                if j == 0 and with_spp and idx == len(structure) - 1:
                    units.append(SPPBottleneck(spec.out_channels, spec.out_channels, act="silu"))
            stages.append(nn.Sequential(*units))
        self.stages = nn.ModuleList(stages)
        self.stage_channels = [s.out_channels for s in structure]
        self._check_indices()
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """The release's rule for the mobile family: every convolution N(0, 1 / fan-in
        channels) (``weight.shape[1]``: 1 for a depthwise conv, so std 1), biases 0;
        BatchNorm weight 1, bias 1e-4, running mean 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 1.0 / m.weight.shape[1])
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.constant_(m.bias, 1e-4)
                nn.init.zeros_(m.running_mean)


BACKBONES: dict[str, type[_TinyNAS]] = {"res": TinyNASRes, "csp": TinyNASCSP, "mob": TinyNASMob}
