"""Exponential moving average of the model (the release's momentum ramp)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["ModelEMA"]


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

    def decay(self) -> float:
        return self.momentum * (1.0 - math.exp(-self.updates / self.ramp))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        m = self.decay()
        src = model.state_dict()
        for name, v in self.model.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(m).add_(src[name].detach(), alpha=1.0 - m)
            else:
                v.copy_(src[name])
        self.updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates,
                "momentum": self.momentum, "ramp": self.ramp}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
