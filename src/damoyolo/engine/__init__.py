"""Training engine: trainer, callbacks, hardware policy, optimizer/schedule, EMA, distributed
helpers, a preset's training configuration.  The training set-up (``damoyolo.train``) is
:mod:`damoyolo.workflows.train`."""

from .._moved import moved
from .api import experiment_config_for, train_config_for
from .ema import ModelEMA
from .optim import CosineSchedule, build_optimizer, param_groups
from .trainer import EpochSampler, Trainer, TrainingDiverged

__all__ = ["Trainer", "TrainingDiverged", "EpochSampler", "ModelEMA", "CosineSchedule",
           "build_optimizer", "param_groups", "train_config_for", "experiment_config_for"]

# Deprecated: one release only (see damoyolo.engine.api): the string import of
# damoyolo._moved exists only for this shim.
__getattr__ = moved(__name__, {"train": "damoyolo.workflows.train",
                               "load_for_finetune": "damoyolo.workflows.train"})
