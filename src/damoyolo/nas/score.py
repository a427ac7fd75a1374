"""Zero-shot scores of MAE-NAS: the analytic maximum-entropy ("madnas") score and the
forward-pass entropy score it approximates.

For a plain chain of convolutions with unit-variance Gaussian weights and input, BatchNorm and
ReLU removed, a KxK convolution from ``C`` channels multiplies the activation standard deviation
by ``sqrt(C K^2)``.  The analytic score adds up these log gains unit by unit (a unit's gain is
the sum over its two convolutions; the shortcut is ignored), cumulatively from the stem to the
end of each stage, adds the log of the stage's output channels, and weights the stages
(default ``[0, 0, 1, 1, 16]``: only the three detector feature levels count, the last most).

A stage ends at the block before each stride-2 block (the stem excluded) and at the last block;
for the six-block DAMO-YOLO layout that gives five stages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..config import ConfigError
from ..models.backbones.structure import K1KX, STEM, BlockSpec
from .cost import iter_units

__all__ = ["ScoreResult", "DEFAULT_STAGE_WEIGHTS", "stage_info", "unit_log_gains",
           "madnas_score", "entropy_score"]

DEFAULT_STAGE_WEIGHTS: tuple[float, ...] = (0.0, 0.0, 1.0, 1.0, 16.0)


@dataclass(frozen=True)
class ScoreResult:
    """total: the score; stage_terms: weighted per-stage terms (they sum to ``total``)."""

    total: float
    stage_terms: tuple[float, ...]


def stage_info(blocks: Sequence[BlockSpec]) -> tuple[list[int], list[int]]:
    """Per stage: the number of units from the network input to the stage end (cumulative),
    and the stage's output channels."""
    units_before, channels = [], []
    n_units, last_out = 0, 0
    for i, b in enumerate(blocks):
        if b.stride == 2 and i > 0:
            units_before.append(n_units)
            channels.append(last_out)
        n_units += 1 if b.kind == STEM else b.num_layers
        last_out = b.out_channels
    units_before.append(n_units)
    channels.append(last_out)
    return units_before, channels


def unit_log_gains(blocks: Sequence[BlockSpec]) -> list[float]:
    """Analytic log standard-deviation gain of every unit, in float64."""
    gains = []
    for u in iter_units(blocks):
        if u.kind == STEM:
            gains.append(float(np.log(np.sqrt(np.float64(u.in_channels * u.kernel ** 2)))))
            continue
        k1 = 1 if u.kind == K1KX else u.kernel ** 2
        gains.append(float(np.log(np.sqrt(np.float64(u.in_channels * k1)))
                           + np.log(np.sqrt(np.float64(u.btn * u.kernel ** 2)))))
    return gains


def _combine(gains: Sequence[float], blocks: Sequence[BlockSpec],
             stage_weights: Sequence[float]) -> ScoreResult:
    units_before, channels = stage_info(blocks)
    if len(units_before) != len(stage_weights):
        raise ConfigError(f"the structure has {len(units_before)} stages but {len(stage_weights)} "
                          f"stage weights were given ({list(stage_weights)})")
    terms = []
    for n, c, w in zip(units_before, channels, stage_weights):
        if w == 0:
            terms.append(0.0)
            continue
        acc = 0.0
        for g in gains[:n]:
            acc += g
        terms.append(float((acc + np.log(np.float64(c))) * w))
    return ScoreResult(float(np.sum(np.asarray(terms, dtype=np.float64))), tuple(terms))


def madnas_score(blocks: Sequence[BlockSpec],
                 stage_weights: Sequence[float] = DEFAULT_STAGE_WEIGHTS) -> ScoreResult:
    """Analytic maximum-entropy score of a search-form structure (float64, deterministic)."""
    return _combine(unit_log_gains(blocks), blocks, stage_weights)


def entropy_score(blocks: Sequence[BlockSpec], resolution: int = 96, repeats: int = 2,
                  batch_size: int = 2, seed: int = 0,
                  stage_weights: Sequence[float] = DEFAULT_STAGE_WEIGHTS) -> ScoreResult:
    """Forward-pass entropy score: the same combination as :func:`madnas_score`, but each
    unit's log gain is measured by running its convolutions (N(0, 1) weights, no BatchNorm, no
    ReLU, no shortcut) on a Gaussian input and dividing every convolution's output by its
    standard deviation.  Averaged over ``repeats`` draws; allocates weights (one conv at a time).
    The input is ``batch_size`` x C x ``resolution`` x ``resolution``; convolutions pad
    circularly so that every output sees ``C K^2`` inputs and the gain does not depend on the
    resolution (zero padding would lower it on small maps).
    """
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(int(seed))
    totals, all_terms = [], []
    units = iter_units(blocks)
    for _ in range(max(1, int(repeats))):
        x = torch.randn(batch_size, units[0].in_channels, resolution, resolution, generator=gen)
        gains = []
        with torch.no_grad():
            for u in units:
                if u.kind == STEM:
                    convs = [(u.in_channels, u.out_channels, u.kernel, u.stride)]
                else:
                    k1 = 1 if u.kind == K1KX else u.kernel
                    convs = [(u.in_channels, u.btn, k1, 1), (u.btn, u.out_channels, u.kernel, u.stride)]
                log_gain = 0.0
                for cin, cout, k, s in convs:
                    w = torch.randn(cout, cin, k, k, generator=gen)
                    p = (k - 1) // 2
                    if p:
                        x = F.pad(x, (p, p, p, p), mode="circular")
                    x = F.conv2d(x, w, stride=s)
                    std = x.double().std()
                    log_gain += math.log(float(std))
                    x = x / std.to(x.dtype)
                gains.append(log_gain)
        r = _combine(gains, blocks, stage_weights)
        totals.append(r.total)
        all_terms.append(r.stage_terms)
    mean_terms = tuple(float(v) for v in np.mean(np.asarray(all_terms, dtype=np.float64), axis=0))
    return ScoreResult(float(np.mean(totals)), mean_terms)
