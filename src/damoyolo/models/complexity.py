"""Parameter and FLOP counts in the paper's convention.

FLOPs are counted with thop (the counter the official tables used) as
GFLOPs = 2 x MACs at the preset's input size, on the deploy form of the model:
RepConv branches fused, conv+BN pairs *not* folded (the official deploy form).
"""

from __future__ import annotations

import copy
import contextlib
import io

import torch
from torch import nn

from .reparam import reparameterize

__all__ = ["count_params", "count_flops", "model_complexity"]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _half_bn(m: nn.BatchNorm2d, x, y) -> None:
    # half of thop 0.1.1's rule for an affine BN (4 ops per output element -> 2)
    m.total_ops += torch.DoubleTensor([2 * int(x[0].numel())])


@torch.no_grad()
def count_flops(model: nn.Module, input_hw: tuple[int, int], bn_rule: str = "thop") -> float:
    """GFLOPs (2 x MACs, thop) of one image at ``input_hw``.

    bn_rule: ``"thop"`` (thop 0.1.1: 4 ops per affine-BN output element) or ``"half"``
    (2 per element, which reproduces the published nano-model figures).
    """
    from thop import profile

    if bn_rule not in ("thop", "half"):
        raise ValueError(f"bn_rule must be 'thop' or 'half', got {bn_rule!r}")
    m = copy.deepcopy(model).eval()
    x = torch.zeros(1, 3, *input_hw, device=next(m.parameters()).device)
    from thop.profile import register_hooks

    from ..ops.depthwise import DepthwiseConv2d

    # thop matches modules by exact type: the depthwise subclass counts as nn.Conv2d
    custom = {DepthwiseConv2d: register_hooks[nn.Conv2d]}
    if bn_rule == "half":
        custom[nn.BatchNorm2d] = _half_bn
    with contextlib.redirect_stdout(io.StringIO()):
        macs, _ = profile(m, inputs=(x,), custom_ops=custom, verbose=False)
    return 2 * float(macs) / 1e9


def model_complexity(model: nn.Module, input_hw: tuple[int, int], bn_rule: str = "thop"
                     ) -> tuple[float, float]:
    """(params in millions, GFLOPs) of the deploy form (RepConv fused, BN kept)."""
    deploy = reparameterize(copy.deepcopy(model), fold_bn=False)
    return count_params(deploy) / 1e6, count_flops(deploy, input_hw, bn_rule)
