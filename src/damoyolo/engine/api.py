"""A preset's training configuration (``train_config_for``, ``experiment_config_for``) and
``--set`` strings for short runs.  Training itself is :func:`damoyolo.train`
(:mod:`damoyolo.workflows.train`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from .._moved import moved
from ..config import ConfigError, ExperimentConfig, TrainConfig
from ..presets import get_preset

__all__ = ["train_config_for", "experiment_config_for", "short_run_overrides"]


def short_run_overrides(batch: int, lr: float, **train_fields: Any) -> list[str]:
    """``--set`` strings for a short run at ``batch`` images per step: no gradient
    accumulation (``nominal_batch = batch``) and learning rate ``lr`` at that batch, plus any
    other ``train.*`` field given by keyword (``None`` leaves the recipe's value)::

        short_run_overrides(16, 2e-3, warmup_epochs=1, no_aug_epochs=3, eval_interval=2)
    """
    sets = [f"train.nominal_batch={batch}", f"train.base_lr_per_img={lr / batch}"]
    return sets + [f"train.{k}={v}" for k, v in train_fields.items() if v is not None]


def train_config_for(preset: str, recipe: str = "auto") -> TrainConfig:
    """A preset's training configuration: the release's optimizer values, with the schedule
    sized by ``recipe`` (``"auto"``: fitted to the run; ``"release"``: the release's values,
    see :mod:`damoyolo.engine.schedule`)."""
    from .schedule import RECIPES
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    return dataclasses.replace(get_preset(preset).train, recipe=recipe)


def experiment_config_for(preset: str, recipe: str = "auto") -> ExperimentConfig:
    p = get_preset(preset)
    return ExperimentConfig(model=p.model, train=train_config_for(preset, recipe), aug=p.aug)


# Deprecated: one release only.  The training set-up composes data, distill, checkpoint and
# the engine, so train() and load_for_finetune live in damoyolo.workflows.train; the old
# names import from there with a DeprecationWarning.  damoyolo._moved names the new module
# as a string (importlib): that string import exists only for this one-release shim, so
# that the engine floor does not import workflows.
__getattr__ = moved(__name__, {"train": "damoyolo.workflows.train",
                               "load_for_finetune": "damoyolo.workflows.train"})
