"""Training set-up: from ``damoyolo.train``'s arguments (or ``damoyolo train``'s) to a
running :class:`~damoyolo.engine.trainer.Trainer`.

The configuration is resolved once (:func:`experiment_for`: preset, recipe, arguments,
overrides).  :func:`plan_training` then checks what can fail before any data is read (the
assigner's name, the evaluation package, the teacher), reads the data, seeds once and
builds or loads the model, and only then claims the run folder, so that a start that
fails leaves no folder behind.  It decides the device kind, the loader workers and the
image cache once, and hands all of it to the trainer as a :class:`TrainingPlan`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ExperimentConfig, TrainConfig, apply_overrides
from ..engine.api import experiment_config_for
from ..engine.policy import default_workers, device_kind
from ..engine.trainer import Trainer, seed_everything
from ..runtime import dist as du

__all__ = ["train", "TrainingPlan", "experiment_for", "plan_training", "load_for_finetune",
           "claim_run_folder"]


def experiment_for(preset: str, recipe: str = "auto", *, epochs: int | None = None,
                   batch: int | None = None, imgsz: int | None = None,
                   device: str | None = None, workers: int | None = None,
                   output: str | Path | None = None, teacher: str | Path | None = None,
                   teacher_model: str | None = None,
                   overrides: list[str] | dict | None = None) -> ExperimentConfig:
    """The run's configuration: the preset's with ``recipe``, then the arguments given
    (``None`` keeps the recipe's value), then ``overrides`` (dotted ``key=value`` strings or
    a dict); every value is checked against its config field."""
    given = {"train.epochs": epochs, "train.batch_size": batch,
             "model.input_size": None if imgsz is None else (imgsz, imgsz),
             "train.device": device, "train.workers": workers,
             "train.output": None if output is None else str(output),
             "distill.teacher": None if teacher is None else str(teacher),
             "distill.teacher_model": teacher_model}
    exp = apply_overrides(experiment_config_for(preset, recipe),
                          {k: v for k, v in given.items() if v is not None})
    return apply_overrides(exp, overrides) if overrides else exp


def load_for_finetune(weights: str | Path, model: str | Any, class_names: list[str]):
    """Load any checkpoint (ours or an official release) for fine-tuning on ``class_names``.

    When the class set differs, only the class projections are re-initialised; the
    checkpoint's category ids are dropped with its class names (they describe its dataset).
    """
    from ..checkpoint import load_model
    net = load_model(weights, model=model)
    if net.num_classes != len(class_names) or (net.class_names or []) != list(class_names):
        if net.num_classes != len(class_names):
            net.reset_classes(list(class_names))
        else:
            net.rename_classes(list(class_names))
    return net.train()


def claim_run_folder(exp: ExperimentConfig, output, resume, exist_ok: bool, progress: bool
                     ) -> ExperimentConfig:
    """``exp`` with its run folder taken: ``--resume X/last.pt`` continues in ``X`` (unless
    ``output`` names another folder); otherwise a folder holding files is not reused unless
    ``exist_ok`` (:func:`damoyolo.outputs.claim_run_dir`).  Under torchrun the process group
    is joined here and rank 0 decides for all ranks."""
    from ..outputs import claim_run_dir
    out = exp.train.output
    if resume is not None and output is None and out == TrainConfig().output:
        chosen = str(Path(resume).parent)
    else:
        chosen = None
        if du.rank() == 0:  # created at once: a concurrent run
            chosen = str(claim_run_dir(out, exist_ok=exist_ok or resume is not None))
    if du.world_size() > 1:
        du.init_distributed(exp.train.device, exp.train.ddp_timeout)
        chosen = du.broadcast_object(chosen, src=0)
    if chosen != out and progress and du.rank() == 0:
        why = "the run continues in its folder" if resume is not None else \
            f"{out} already holds results (--exist-ok writes into it)"
        print(f"run folder: {chosen} ({why})", flush=True)
    return apply_overrides(exp, {"train.output": chosen})


@dataclass(frozen=True)
class TrainingPlan:
    """A training run, set up: what the trainer is handed.

    exp: the resolved configuration, ``train.output`` the claimed run folder.  cfg: the
    trainer's settings (``exp.train``; ``distill.grad_clip`` replaces ``train.grad_clip``
    while distilling).  model: built from the preset or loaded for fine-tuning, seeded with
    ``train.seed``, its classes the dataset's.  train_set, val_set, bn_set: the datasets
    (bn_set: the training images without augmentation, for precise BN); val_gt and
    category_ids: the validation ground truth (COCO dict) and the dataset's category ids.
    task: the distillation task, or ``None``.  resume: the ``last.pt`` to continue from.
    device: the kind of device it trains on; workers: loader workers per rank; cache:
    whether the training images are held in memory (already cached when ``True``).
    """

    exp: ExperimentConfig
    cfg: TrainConfig
    model: Any
    train_set: Any
    val_set: Any
    bn_set: Any
    val_gt: dict
    category_ids: list[int]
    task: Any
    resume: str | Path | None
    device: torch.device
    workers: int
    cache: bool
    progress: bool

    def trainer(self) -> Trainer:
        """The trainer of this run (under torchrun it joins the process group)."""
        from ..data import build_loader
        return Trainer(self.model, self.train_set, self.cfg, val_set=self.val_set,
                       val_gt=self.val_gt, category_ids=self.category_ids,
                       loader_fn=build_loader, resume=self.resume, progress=self.progress,
                       task=self.task, bn_set=self.bn_set, workers=self.workers)


def _check_before_data(exp: ExperimentConfig) -> None:
    """What fails before the data is read: an unknown assigner; a missing evaluation package
    when the run evaluates (the last epoch always is when ``train.eval_interval`` > 0)."""
    from ..assign import assigner_class
    assigner_class(exp.train.assigner)
    if exp.train.eval_interval > 0:
        from .._optional import import_optional
        import_optional("faster_coco_eval", "evaluation during training (train.eval_interval "
                        "> 0; 0 trains without it)")


def _image_cache(train_set, cfg: TrainConfig, workers: int, progress: bool) -> bool:
    """Whether the training images are held in memory (``train.cache_images``; auto: small
    datasets, one process, :func:`damoyolo.data.cache.auto_cache_fits`), and the caching:
    memory-checked first, one copy per node under torchrun (shared through the group)."""
    cache, world = cfg.cache_images, du.world_size()
    if cache is None:
        from ..data.cache import auto_cache_fits
        cache, why = auto_cache_fits(train_set, world, workers=workers)
        if progress and du.rank() == 0:
            print(f"image cache (train.cache_images auto): {'on' if cache else 'off'}, {why}",
                  flush=True)
    if cache:
        if world > 1:  # the trainer's own call then finds the group joined
            du.init_distributed(cfg.device, cfg.ddp_timeout)
        train_set.cache_images(progress=progress, workers=workers)
        if progress and du.local_rank() == 0:
            print(train_set.image_cache.summary(), flush=True)
    return bool(cache)


def plan_training(exp: ExperimentConfig, data: str | Path, *, weights: str | Path | None = None,
                  resume: str | Path | None = None, output: str | Path | None = None,
                  exist_ok: bool = False, progress: bool = True) -> TrainingPlan:
    """Set a run up from its resolved configuration (see the module docstring for the
    order); ``output``: the ``output`` argument the configuration was resolved with."""
    _check_before_data(exp)
    task = None
    if exp.distill.teacher:  # before reading the data: a bad teacher fails fast
        from ..distill import DistillTask, load_teacher
        task = DistillTask(load_teacher(exp.distill.teacher, exp.distill.teacher_model),
                           exp.distill)
    from ..data import DetectionDataset, load_dataset
    from ..models.factory import build_model
    train_idx = load_dataset(data, split="train")
    val_idx = load_dataset(data, split="val")
    if progress and du.rank() == 0:  # before the process group exists
        print("train " + train_idx.summary() + "\nval " + val_idx.summary(), flush=True)
    names = train_idx.class_names
    cfg_model = dataclasses.replace(exp.model, head=dataclasses.replace(
        exp.model.head, num_classes=len(names)))
    seed_everything(exp.train.seed)  # the initial weights (and re-initialised heads) too
    if weights is not None:
        net = load_for_finetune(weights, cfg_model, names)
    else:
        net = build_model(cfg_model, class_names=names)
    # the run folder is taken once everything that can fail before training has passed
    exp = claim_run_folder(exp, output, resume, exist_ok, progress)
    cfg = exp.train
    if task is not None and exp.distill.grad_clip > 0:
        cfg = dataclasses.replace(cfg, grad_clip=exp.distill.grad_clip)
    size = tuple(cfg_model.input_size)
    train_set = DetectionDataset(train_idx, input_size=size, train=True, aug=exp.aug,
                                 seed=cfg.seed)
    val_set = DetectionDataset(val_idx, input_size=size, train=False, aug=None, seed=cfg.seed)
    device = device_kind(cfg.device)
    workers = default_workers(cfg.workers, device)  # the loader workers per rank
    cache = _image_cache(train_set, cfg, workers, progress)
    val_gt = val_idx.to_coco_dict()
    bn_set = DetectionDataset(train_idx, input_size=size, train=False, aug=None, seed=cfg.seed)
    return TrainingPlan(exp=exp, cfg=cfg, model=net, train_set=train_set, val_set=val_set,
                        bn_set=bn_set, val_gt=val_gt, category_ids=train_idx.category_ids,
                        task=task, resume=resume, device=device, workers=workers,
                        cache=cache, progress=progress)


def train(model: str = "damoyolo-t", data: str | Path = "", epochs: int | None = None,
          batch: int | None = None, imgsz: int | None = None, device: str | None = None,
          workers: int | None = None, overrides: list[str] | dict | None = None,
          weights: str | Path | None = None, resume: str | Path | None = None,
          output: str | Path | None = None, progress: bool = True,
          teacher: str | Path | None = None, teacher_model: str | None = None,
          recipe: str = "auto", exist_ok: bool = False) -> dict:
    """Train a preset on a dataset (COCO json, YOLO txt or Pascal VOC) with the preset's recipe.

    batch: images per iteration over all processes (default 16).  recipe: ``"auto"`` sizes
    warm-up, the no-aug tail, EMA and accumulation for the run; ``"release"`` uses the
    release's values (accumulating to its batch of 256); see :mod:`damoyolo.engine.schedule`.
    overrides: dotted ``key=value`` strings on :class:`~damoyolo.config.ExperimentConfig`
    (``train.epochs=10``, ``aug.mosaic_prob=0.5``, ``model.head.reg_max=...``).
    weights: fine-tune from this checkpoint; resume: continue a run from its ``last.pt``, in
    that file's folder unless ``output`` names another.
    output: the run folder (default ``runs/train``); one that already holds files is not
    reused unless ``exist_ok``: the run goes to the next free ``runs/train2``, ``runs/train3``,
    ... (printed at the start; see :mod:`damoyolo.outputs`).
    teacher: distil from this teacher (checkpoint, ours or official, or preset name;
    ``distill.teacher``); teacher_model: architecture of an official teacher checkpoint.
    The ``distill.*`` overrides set the method, weight and schedule (see docs/distillation.md).
    Returns the last epoch's record (mean losses, learning rate, ``val_*`` metrics).
    """
    exp = experiment_for(model, recipe, epochs=epochs, batch=batch, imgsz=imgsz, device=device,
                         workers=workers, output=output, teacher=teacher,
                         teacher_model=teacher_model, overrides=overrides)
    plan = plan_training(exp, data, weights=weights, resume=resume, output=output,
                         exist_ok=exist_ok, progress=progress)
    return plan.trainer().fit()
