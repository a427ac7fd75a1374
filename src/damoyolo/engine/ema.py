"""Exponential moving average of the model (the release's momentum ramp)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["ModelEMA"]


def _holder(module: nn.Module, name: str) -> tuple[dict, str]:
    """The dict (``_parameters`` or ``_buffers``) and key that hold state ``name``."""
    path, _, key = name.rpartition(".")
    sub = module.get_submodule(path) if path else module
    return (sub._parameters if key in sub._parameters else sub._buffers), key


class ModelEMA:
    """``ema = m * ema + (1 - m) * model`` over all floating-point state (weights and BN stats).

    ``m = momentum * (1 - exp(-updates / ramp))`` where ``updates`` counts previous updates
    (the first update copies the model, as in the release).
    """

    def __init__(self, model: nn.Module, momentum: float = 0.9998, ramp: float = 2000.0):
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.momentum = momentum
        self.ramp = ramp
        self.updates = 0
        self._pairs: tuple | None = None  # (source module, holder slots, tensor lists)

    def _tensors(self, model: nn.Module) -> tuple[list, list, list, list]:
        """``model``'s state tensors and ours: (floating sources, floating targets, other
        sources, other targets), in ``state_dict`` order.  Cached, and rebuilt when any of
        them is no longer the tensor its module holds (a ``.to()`` or a reassignment)."""
        cached = self._pairs
        if cached is not None and cached[0] is model and all(
                d.get(k) is t for d, k, t in cached[1]):
            return cached[2]
        slots, lists = [], ([], [], [], [])
        for name, v in self.model.state_dict(keep_vars=True).items():
            d_src, key = _holder(model, name)
            d_ema, _ = _holder(self.model, name)
            src = d_src[key]
            slots += [(d_src, key, src), (d_ema, key, v)]
            i = 0 if v.dtype.is_floating_point else 2
            lists[i].append(src)
            lists[i + 1].append(v)
        self._pairs = (model, slots, lists)
        return lists

    def decay(self) -> float:
        return self.momentum * (1.0 - math.exp(-self.updates / self.ramp))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        m = self.decay()
        src_f, ema_f, src_o, ema_o = self._tensors(model)
        if ema_f:  # the same two roundings as v.mul_(m).add_(s, alpha=1 - m)
            torch._foreach_mul_(ema_f, m)
            torch._foreach_add_(ema_f, src_f, alpha=1.0 - m)
        for v, s in zip(ema_o, src_o):
            v.copy_(s)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates,
                "momentum": self.momentum, "ramp": self.ramp}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self._pairs = None
        self.updates = int(state["updates"])
