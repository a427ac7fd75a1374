"""A run's schedule, resolved once from the training config and the dataset size.

Two recipes (``train.recipe``):

* ``"release"`` -- the release's values as they are: warm-up 5 epochs, no-aug 16 epochs,
  gradients accumulated to a nominal batch of 256, EMA momentum 0.9998 with a ramp of 2000
  updates.  Right for long runs on large datasets (COCO: 300 epochs of 463 iterations).
* ``"auto"`` (default) -- the same schedule shape, sized for the run at hand.  A run shorter
  than the release's (138,900 optimizer steps) keeps its proportions: warm-up 5/300 and the
  no-aug tail 16/300 of the run, the EMA ramp 2000 and horizon ``1 / (1 - momentum)`` 5000
  updates per 138,900, each with a minimum in optimizer steps (below), and no gradient
  accumulation unless ``train.nominal_batch`` asks for it.  Without accumulation SGD's
  learning rate scales with the batch (``base_lr_per_img * batch``) and AdamW's does not
  (``base_lr_per_img * 256``: 4e-3 for the nano presets).  A run at least as long as the
  release's gets the release's values.

Auto also recomputes the evaluated model's BatchNorm statistics on 256 clean training images
before each evaluation (:mod:`damoyolo.engine.bn`): in a short run the running averages still
carry the first steps' activations.  The release keeps them as trained.

Minimums (auto): warm-up ``min(50 steps, 10% of the run)``; from 5 epochs on, the no-aug
tail covers ``min(20 steps, 10% of the epochs)``, at least one epoch; EMA ramp and horizon
10 updates.
An explicit field (``train.warmup_epochs=3``, ``train.no_aug_epochs=2``, ``train.ema_ramp``,
``train.ema_momentum``, ``train.nominal_batch``) always wins over both rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import TrainConfig

__all__ = ["RELEASE", "Release", "Schedule", "resolve_schedule", "RECIPES"]

RECIPES = ("auto", "release")


@dataclass(frozen=True)
class Release:
    """The release's schedule (the same for every preset)."""

    epochs: int = 300
    batch: int = 256
    warmup_epochs: float = 5.0
    no_aug_epochs: int = 16
    ema_ramp: float = 2000.0
    ema_momentum: float = 0.9998
    iters_per_epoch: int = 463  # COCO train2017: ceil(118287 / 256)

    @property
    def steps(self) -> int:
        return self.epochs * self.iters_per_epoch


RELEASE = Release()

MIN_WARMUP_STEPS = 50
MIN_NO_AUG_STEPS = 20
MIN_EMA_UPDATES = 10.0
MIN_STEPS_WARNING = 100
PRECISE_BN_IMAGES = 256


@dataclass(frozen=True)
class Schedule:
    """Everything the trainer needs to know about the run's length, learning rate and EMA.

    Iterations count micro-batches; optimizer steps are ``iterations / accumulate``.
    """

    recipe: str
    epochs: int
    iters_per_epoch: int
    batch_size: int
    accumulate: int
    base_lr: float
    min_lr: float
    warmup_iters: int
    no_aug_epochs: int
    ema_ramp: float
    ema_momentum: float
    optimizer: str
    precise_bn: int = 0  # training images over which BN statistics are recomputed before eval
    auto: tuple[str, ...] = ()  # the fields sized by the auto rule

    @property
    def total_iters(self) -> int:
        return self.epochs * self.iters_per_epoch

    @property
    def steps(self) -> int:
        return math.ceil(self.total_iters / self.accumulate)

    @property
    def no_aug_iters(self) -> int:
        return self.no_aug_epochs * self.iters_per_epoch

    @property
    def cosine_iters(self) -> int:
        return max(self.total_iters - self.warmup_iters - self.no_aug_iters, 0)

    def warnings(self) -> list[str]:
        out = []
        if self.steps < MIN_STEPS_WARNING:
            out.append(f"only {self.steps} optimizer steps: too few to train a detector "
                       f"(aim for several hundred: more epochs, a smaller batch or less "
                       f"accumulation)")
        if self.warmup_iters >= self.total_iters:
            out.append("the warm-up is as long as the run: the learning rate never reaches "
                       "its peak (lower train.warmup_epochs)")
        elif self.warmup_iters + self.no_aug_iters >= self.total_iters:
            out.append("warm-up and the no-aug tail cover the whole run: no cosine phase "
                       "(lower train.warmup_epochs or train.no_aug_epochs)")
        if self.no_aug_epochs >= self.epochs:
            out.append("no strong-augmentation phase: train.no_aug_epochs >= train.epochs")
        if self.ema_ramp > 0 and self.ema_momentum > 0:
            horizon = 1.0 / max(1.0 - self.ema_momentum, 1e-12)
            if horizon > 0.5 * self.steps:
                out.append(f"the EMA averages over ~{horizon:.0f} updates, more than half of "
                           f"the run's {self.steps} steps: the evaluated (EMA) model lags "
                           f"behind training (lower train.ema_momentum)")
        return out

    def lines(self) -> list[str]:
        def pct(it: int) -> str:
            return f"{100.0 * it / max(self.total_iters, 1):.0f}%"

        def sized(name: str) -> str:
            return " (auto)" if name in self.auto else ""

        a = self.accumulate
        horizon = 1.0 / max(1.0 - self.ema_momentum, 1e-12)
        return [
            f"schedule (recipe {self.recipe}; release: {RELEASE.epochs} epochs at batch "
            f"{RELEASE.batch}, warm-up {RELEASE.warmup_epochs:g}, no-aug "
            f"{RELEASE.no_aug_epochs}, EMA ramp {RELEASE.ema_ramp:g}):",
            f"  {self.epochs} epochs x {self.iters_per_epoch} iterations = {self.total_iters} "
            f"iterations of {self.batch_size} images, accumulation {a}{sized('accumulate')} "
            f"-> {self.steps} optimizer steps ({self.optimizer})",
            f"  lr: peak {self.base_lr:.3g}, min {self.min_lr:.3g}"
            + (" (auto: AdamW at the release's rate, not scaled with the batch)"
               if "lr" in self.auto else ""),
            f"  warm-up {math.ceil(self.warmup_iters / a)} steps ({pct(self.warmup_iters)})"
            f"{sized('warmup')}, cosine {math.ceil(self.cosine_iters / a)} steps "
            f"({pct(self.cosine_iters)}), no-aug last {self.no_aug_epochs} epochs "
            f"({math.ceil(self.no_aug_iters / a)} steps, {pct(self.no_aug_iters)}, flat min lr)"
            f"{sized('no_aug')}",
            f"  EMA: ramp {self.ema_ramp:.4g} updates, momentum {self.ema_momentum:.6g} "
            f"(horizon ~{horizon:.0f} updates){sized('ema')}; BatchNorm statistics "
            + (f"recomputed on {self.precise_bn} training images before each evaluation"
               f"{sized('precise_bn')}" if self.precise_bn else "as trained (running average)"),
        ]


def resolve_schedule(cfg: TrainConfig, samples_per_rank: int, world: int = 1) -> Schedule:
    """Size the schedule of ``cfg`` for ``samples_per_rank`` training images per epoch on
    each of ``world`` ranks (``cfg.batch_size`` is over all ranks)."""
    if cfg.recipe not in RECIPES:
        from ..config import ConfigError
        raise ConfigError(f"train.recipe={cfg.recipe!r}: valid: {', '.join(RECIPES)}")
    release = cfg.recipe == "release"
    ipe = max(1, math.ceil(samples_per_rank / (cfg.batch_size // world)))
    total = cfg.epochs * ipe
    auto: list[str] = []

    if cfg.nominal_batch > 0:
        accumulate = max(1, math.ceil(cfg.nominal_batch / cfg.batch_size))
    elif release:
        accumulate = max(1, math.ceil(RELEASE.batch / cfg.batch_size))
    else:
        accumulate = 1
        auto.append("accumulate")
    steps = math.ceil(total / accumulate)
    scale = min(1.0, steps / RELEASE.steps)  # this run's length relative to the release's
    as_release = release or scale >= 1.0  # the release's values for what is not given

    if cfg.warmup_epochs is not None:
        warmup = round(cfg.warmup_epochs * ipe)
    elif as_release:
        warmup = round(RELEASE.warmup_epochs * ipe)
    else:
        wsteps = max(round(steps * RELEASE.warmup_epochs / RELEASE.epochs),
                     min(MIN_WARMUP_STEPS, round(0.1 * steps)))
        warmup = min(wsteps * accumulate, total)
        auto.append("warmup")

    if cfg.no_aug_epochs is not None:
        no_aug = min(cfg.no_aug_epochs, cfg.epochs)
    elif as_release:
        no_aug = min(RELEASE.no_aug_epochs, cfg.epochs)
    else:
        floor = (min(math.ceil(MIN_NO_AUG_STEPS * accumulate / ipe), max(1, cfg.epochs // 10))
                 if cfg.epochs >= 5 else 0)
        no_aug = max(round(cfg.epochs * RELEASE.no_aug_epochs / RELEASE.epochs), floor)
        auto.append("no_aug")

    if cfg.ema_ramp is not None:
        ramp = cfg.ema_ramp
    elif as_release:
        ramp = RELEASE.ema_ramp
    else:
        ramp = max(RELEASE.ema_ramp * scale, MIN_EMA_UPDATES)
    if cfg.ema_momentum is not None:
        momentum = cfg.ema_momentum
    elif as_release:
        momentum = RELEASE.ema_momentum
    else:
        horizon = max(scale / (1.0 - RELEASE.ema_momentum), MIN_EMA_UPDATES)
        momentum = 1.0 - 1.0 / horizon
    if not as_release and (cfg.ema_ramp is None or cfg.ema_momentum is None):
        auto.append("ema")

    if cfg.lr is not None:
        base_lr = cfg.lr
    elif cfg.optimizer.lower() == "adamw" and not release and cfg.nominal_batch == 0:
        base_lr = cfg.base_lr_per_img * RELEASE.batch  # Adam: not scaled with the batch
        auto.append("lr")
    else:
        base_lr = cfg.base_lr_per_img * cfg.batch_size * accumulate
    if cfg.precise_bn is not None:
        precise_bn = cfg.precise_bn
    elif release:
        precise_bn = 0
    else:
        precise_bn = PRECISE_BN_IMAGES
        auto.append("precise_bn")
    return Schedule(recipe=cfg.recipe, epochs=cfg.epochs, iters_per_epoch=ipe,
                    batch_size=cfg.batch_size, accumulate=accumulate, base_lr=base_lr,
                    min_lr=base_lr * cfg.min_lr_ratio, warmup_iters=warmup,
                    no_aug_epochs=no_aug, ema_ramp=ramp, ema_momentum=momentum,
                    optimizer=cfg.optimizer, precise_bn=precise_bn, auto=tuple(auto))
