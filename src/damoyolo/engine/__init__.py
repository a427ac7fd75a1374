"""Training engine: trainer, optimizer/schedule, EMA, distributed helpers, high-level API."""

from .api import experiment_config_for, load_for_finetune, train, train_config_for
from .ema import ModelEMA
from .optim import CosineSchedule, build_optimizer, param_groups
from .trainer import EpochSampler, Trainer, TrainingDiverged

__all__ = ["Trainer", "TrainingDiverged", "EpochSampler", "ModelEMA", "CosineSchedule",
           "build_optimizer", "param_groups", "train", "train_config_for",
           "experiment_config_for", "load_for_finetune"]
