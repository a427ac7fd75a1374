"""The training set-up (damoyolo.workflows.train): the configuration resolved once, the
plan handed to the trainer, and damoyolo.train as the workflow's function."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

import damoyolo
from damoyolo.config import ConfigError
from damoyolo.workflows import train as wt

torch.set_num_threads(1)


def test_damoyolo_train_is_the_workflow():
    assert damoyolo.train is wt.train
    params = inspect.signature(wt.train).parameters
    assert list(params) == ["model", "data", "epochs", "batch", "imgsz", "device", "workers",
                            "overrides", "weights", "resume", "output", "progress", "teacher",
                            "teacher_model", "recipe", "exist_ok"]
    assert params["model"].default == "damoyolo-t" and params["recipe"].default == "auto"


def test_experiment_for_arguments_then_overrides():
    exp = wt.experiment_for("damoyolo-ns", epochs=3, batch=8, imgsz=96, output="x",
                            overrides=["train.epochs=5"])
    assert (exp.train.epochs, exp.train.batch_size, exp.model.input_size) == (5, 8, (96, 96))
    assert exp.train.output == "x" and exp.train.workers is None  # None keeps the recipe's
    assert wt.experiment_for("damoyolo-ns", "release").train.recipe == "release"
    with pytest.raises(ConfigError, match="train.epochs"):
        wt.experiment_for("damoyolo-ns", epochs="3")


def test_plan_decides_once_and_claims_the_folder_last(tmp_path):
    from damoyolo.data import synthesize
    synthesize(tmp_path / "d", images=6, size=64, seed=1, workers=1)
    exp = wt.experiment_for("damoyolo-ns", epochs=1, batch=2, imgsz=64, device="cpu",
                            workers=0, output=tmp_path / "run",
                            overrides=["train.eval_interval=0", "train.cache_images=False",
                                       "train.tensorboard=False"])
    with pytest.raises(Exception):  # no data: nothing claimed
        wt.plan_training(exp, tmp_path / "nowhere", progress=False)
    assert not (tmp_path / "run").exists()
    plan = wt.plan_training(exp, tmp_path / "d", progress=False)
    assert (tmp_path / "run").is_dir() and plan.exp.train.output == str(tmp_path / "run")
    assert (plan.device.type, plan.workers, plan.cache) == ("cpu", 0, False)
    from damoyolo.data.synthetic import CLASSES
    assert plan.model.class_names == list(CLASSES) and plan.category_ids == [1, 2, 3, 4, 5, 6]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.workers = 2  # type: ignore[misc]
    tr = plan.trainer()
    assert tr.workers == 0 and tr.cfg is plan.cfg and tr.model is plan.model
