"""Recomputing BatchNorm statistics for the weights being evaluated ("precise BN").

BatchNorm's running statistics are an exponential average (momentum 0.03 in DAMO-YOLO) over
the training steps, of activations produced by weights that kept changing.  Over a long run
they settle; over a short one they still carry the first steps, whose activations can be
orders of magnitude larger (the mobile backbone's depthwise convolutions start at std 1), and
the evaluated model's scores collapse although its training loss is low.  Recomputing the
statistics with the final weights on clean training images fixes this at the cost of a few
forward passes.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["recompute_bn_stats"]


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, loader, max_images: int,
                       device: torch.device | str = "cpu", channels_last: bool = False) -> int:
    """Set every BatchNorm's running mean / variance of ``model`` to their average over the
    batches of ``loader`` (up to ``max_images`` images; ``(images, targets)`` items) in
    training-mode forward passes.  Parameters are untouched; returns the images used."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or max_images <= 0:
        return 0
    momenta = [b.momentum for b in bns]
    was_training = model.training
    saved = [(b.running_mean.clone(), b.running_var.clone(), b.num_batches_tracked.clone())
             for b in bns]
    for b in bns:
        b.reset_running_stats()
        b.momentum = None  # cumulative average over the batches seen
    model.train()
    seen = 0
    try:
        for images, _ in loader:
            images = images[: max_images - seen].to(device)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            model(images)
            seen += len(images)
            if seen >= max_images:
                break
    finally:
        for b, m in zip(bns, momenta):
            b.momentum = m
        model.train(was_training)
    if seen == 0:  # nothing to average: keep the statistics as they were
        for b, (mean, var, n) in zip(bns, saved):
            b.running_mean.copy_(mean)
            b.running_var.copy_(var)
            b.num_batches_tracked.copy_(n)
    return seen
