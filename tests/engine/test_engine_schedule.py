"""The run's schedule: the release's values, and the auto rule that sizes them for a run."""

import math

import pytest

from damoyolo.config import ConfigError, TrainConfig
from damoyolo.engine.schedule import RELEASE, resolve_schedule


def _cfg(**kw):
    return TrainConfig(**kw)


def test_release_recipe_is_the_release():
    s = resolve_schedule(_cfg(recipe="release", epochs=300, batch_size=32), 118287)
    assert s.iters_per_epoch == math.ceil(118287 / 32)
    assert s.accumulate == 8  # nominal batch 256
    assert s.base_lr == pytest.approx(0.01 / 64 * 256)
    assert s.warmup_iters == 5 * s.iters_per_epoch
    assert s.no_aug_epochs == 16
    assert (s.ema_ramp, s.ema_momentum) == (2000.0, 0.9998)
    assert s.auto == () and s.precise_bn == 0


def test_auto_equals_release_on_a_release_length_run():
    s = resolve_schedule(_cfg(epochs=300, batch_size=256), 118287)
    assert s.steps >= RELEASE.steps
    assert (s.warmup_iters, s.no_aug_epochs) == (5 * s.iters_per_epoch, 16)
    assert (s.ema_ramp, s.ema_momentum) == (2000.0, 0.9998)


def test_auto_small_dataset_keeps_every_phase():
    # 26 images, batch 16, 60 epochs: 2 iterations an epoch
    s = resolve_schedule(_cfg(epochs=60, batch_size=16), 26)
    assert (s.iters_per_epoch, s.total_iters, s.accumulate, s.steps) == (2, 120, 1, 120)
    assert s.warmup_iters == 12  # min(50 steps, 10% of the run) beats 5/300 of it
    assert s.no_aug_epochs == 6  # min(20 steps, 10% of the epochs) beats 16/300 of them
    assert s.cosine_iters == 120 - 12 - 12 > 0
    assert s.ema_ramp == 10.0 and s.ema_momentum == pytest.approx(0.9)
    assert set(s.auto) == {"accumulate", "warmup", "no_aug", "ema", "precise_bn"}
    assert s.precise_bn == 256
    assert s.warnings() == []


def test_auto_proportions_on_a_medium_run():
    # 5000 images, batch 16, 100 epochs: 31300 steps, below the release's 138900
    s = resolve_schedule(_cfg(epochs=100, batch_size=16), 5000)
    frac = s.steps / RELEASE.steps
    assert s.warmup_iters == round(s.steps * 5 / 300)
    assert s.no_aug_epochs == round(100 * 16 / 300)
    assert s.ema_ramp == pytest.approx(2000 * frac)
    assert 1 / (1 - s.ema_momentum) == pytest.approx(5000 * frac)


def test_short_runs_get_a_cosine_phase():
    """The release's 5 + 16 epochs used to eat runs of 21 epochs or fewer."""
    for epochs in (5, 10, 21):
        s = resolve_schedule(_cfg(epochs=epochs, batch_size=16), 320)
        assert s.cosine_iters >= 0.7 * s.total_iters, epochs
        assert 1 <= s.no_aug_epochs < epochs


def test_explicit_values_win_and_nominal_batch_accumulates():
    s = resolve_schedule(_cfg(epochs=10, batch_size=8, nominal_batch=64, warmup_epochs=2,
                              no_aug_epochs=3, ema_ramp=100.0, ema_momentum=0.99), 80)
    assert s.accumulate == 8 and s.base_lr == pytest.approx(0.01 / 64 * 64)
    assert (s.warmup_iters, s.no_aug_epochs, s.ema_ramp, s.ema_momentum) == (20, 3, 100.0, 0.99)
    assert "accumulate" not in s.auto and "warmup" not in s.auto


def test_degenerate_runs_warn_and_the_printout_says_it_all():
    s = resolve_schedule(_cfg(recipe="release", epochs=60, batch_size=16), 26)
    w = " ".join(s.warnings())
    assert "optimizer steps" in w  # 120 iterations / 16 = 8 steps
    assert "EMA" in w  # a 5000-update horizon over 8 steps
    assert s.steps == 8
    text = "\n".join(s.lines())
    for needle in ("recipe release", "120 iterations", "accumulation 16", "8 optimizer steps",
                   "lr: peak", "no-aug last 16 epochs", "EMA: ramp 2000"):
        assert needle in text, needle
    s = resolve_schedule(_cfg(epochs=3, batch_size=16, warmup_epochs=5), 64)
    assert any("as long as the run" in x for x in s.warnings())


def test_unknown_recipe():
    with pytest.raises(ConfigError, match="recipe"):
        resolve_schedule(_cfg(recipe="fast"), 10)


def test_learning_rate_rules():
    adamw = dict(optimizer="adamw", base_lr_per_img=0.001 / 64)
    s = resolve_schedule(_cfg(epochs=10, batch_size=8, **adamw), 80)
    assert s.base_lr == pytest.approx(4e-3) and "lr" in s.auto  # batch-independent
    s = resolve_schedule(_cfg(recipe="release", epochs=10, batch_size=8, **adamw), 80)
    assert s.base_lr == pytest.approx(4e-3) and s.accumulate == 32  # 256 by accumulation
    s = resolve_schedule(_cfg(epochs=10, batch_size=8), 80)  # SGD: linear in the batch
    assert s.base_lr == pytest.approx(0.01 / 64 * 8)
    s = resolve_schedule(_cfg(epochs=10, batch_size=8, lr=0.02, **adamw), 80)
    assert s.base_lr == 0.02 and "lr" not in s.auto


def test_experiment_overrides_reach_augmentation_and_training():
    from damoyolo.config import apply_overrides
    from damoyolo.engine import experiment_config_for

    exp = experiment_config_for("damoyolo-ns")
    assert exp.aug.mosaic_scale == (0.75, 1.25) and exp.aug.shear == 0.2  # the preset's
    exp = apply_overrides(exp, ["aug.mosaic_prob=0.5", "aug.mixup_prob=0", "aug.sada=false",
                                "aug.degrees=0", "aug.shear=1.5", "aug.mosaic_scale=(0.5, 1.5)",
                                "train.cache_images=True", "train.warmup_epochs=none"])
    a = exp.aug
    assert (a.mosaic_prob, a.mixup_prob, a.sada, a.degrees, a.shear, a.mosaic_scale) == (
        0.5, 0.0, False, 0.0, 1.5, (0.5, 1.5))
    assert exp.train.cache_images is True and exp.train.warmup_epochs is None
    with pytest.raises(ConfigError, match="Did you mean aug.mosaic_prob|mosaic_prob"):
        apply_overrides(exp, ["aug.mosaic_prb=0.5"])
    with pytest.raises(ConfigError, match="expected a number"):
        apply_overrides(exp, ["aug.mixup_prob=high"])
    assert experiment_config_for("damoyolo-t", "release").train.recipe == "release"
