"""High-level training entry point (``damoyolo.train`` / ``damoyolo train``)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ..config import ConfigError, ExperimentConfig, TrainConfig, apply_overrides
from ..presets import get_preset

__all__ = ["train_config_for", "experiment_config_for", "load_for_finetune", "train",
           "short_run_overrides"]


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


def _with_run_folder(exp: ExperimentConfig, output, resume, exist_ok: bool, progress: bool
                     ) -> ExperimentConfig:
    """The run folder: ``--resume X/last.pt`` continues in ``X`` (unless ``output`` names
    another folder); otherwise a folder holding files is not reused unless ``exist_ok``
    (:func:`damoyolo.outputs.run_dir`).  Under torchrun rank 0 decides for all ranks."""
    from ..outputs import claim_run_dir
    out = exp.train.output
    if resume is not None and output is None and out == TrainConfig().output:
        chosen = str(Path(resume).parent)
    else:
        chosen = None
        if int(os.environ.get("RANK", "0")) == 0:  # created at once: a concurrent run
            chosen = str(claim_run_dir(out, exist_ok=exist_ok or resume is not None))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        from ..runtime.dist import init_distributed
        init_distributed(exp.train.device, exp.train.ddp_timeout)
        box = [chosen]
        dist.broadcast_object_list(box, src=0)
        chosen = box[0]
    if chosen != out and progress and int(os.environ.get("RANK", "0")) == 0:
        why = "the run continues in its folder" if resume is not None else \
            f"{out} already holds results (--exist-ok writes into it)"
        print(f"run folder: {chosen} ({why})", flush=True)
    return apply_overrides(exp, {"train.output": chosen})


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
    exp = experiment_config_for(model, recipe)
    direct: dict[str, Any] = {}
    if epochs is not None:
        direct["train.epochs"] = epochs
    if batch is not None:
        direct["train.batch_size"] = batch
    if imgsz is not None:
        direct["model.input_size"] = (imgsz, imgsz)
    if device is not None:
        direct["train.device"] = device
    if workers is not None:
        direct["train.workers"] = workers
    if output is not None:
        direct["train.output"] = str(output)
    if teacher is not None:
        direct["distill.teacher"] = str(teacher)
    if teacher_model is not None:
        direct["distill.teacher_model"] = teacher_model
    exp = apply_overrides(exp, direct)
    if overrides:
        exp = apply_overrides(exp, overrides)
    from ..assign import assigner_class
    assigner_class(exp.train.assigner)  # an unknown name fails here, before reading the data
    if exp.train.eval_interval > 0:  # the last epoch is always evaluated: fail before training
        from .._optional import import_optional
        import_optional("faster_coco_eval", "evaluation during training (train.eval_interval "
                        "> 0; 0 trains without it)")
    task = None
    if exp.distill.teacher:  # before reading the data: a bad teacher fails fast
        from ..distill import DistillTask, load_teacher
        task = DistillTask(load_teacher(exp.distill.teacher, exp.distill.teacher_model),
                           exp.distill)

    from ..models.factory import build_model
    from ..data import DetectionDataset, build_loader, load_dataset
    from .trainer import Trainer

    train_idx = load_dataset(data, split="train")
    val_idx = load_dataset(data, split="val")
    if progress and int(os.environ.get("RANK", "0")) == 0:  # before the process group exists
        print("train " + train_idx.summary() + "\nval " + val_idx.summary(), flush=True)
    names = train_idx.class_names
    cfg_model = dataclasses.replace(exp.model, head=dataclasses.replace(
        exp.model.head, num_classes=len(names)))
    from .trainer import seed_everything
    seed_everything(exp.train.seed)  # the initial weights (and re-initialised heads) too
    if weights is not None:
        net = load_for_finetune(weights, cfg_model, names)
    else:
        net = build_model(cfg_model, class_names=names)
    # the run folder is taken once everything that can fail before training has passed
    exp = _with_run_folder(exp, output, resume, exist_ok, progress)
    aug = exp.aug
    size = tuple(cfg_model.input_size)
    tcfg = exp.train
    if task is not None and exp.distill.grad_clip > 0:
        tcfg = dataclasses.replace(tcfg, grad_clip=exp.distill.grad_clip)
    train_set = DetectionDataset(train_idx, input_size=size, train=True, aug=aug, seed=tcfg.seed)
    val_set = DetectionDataset(val_idx, input_size=size, train=False, aug=None, seed=tcfg.seed)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cache = tcfg.cache_images
    import torch

    from ..runtime.dist import wants_cuda
    from .trainer import default_workers
    planned = default_workers(tcfg.workers,  # the loader workers per rank the trainer starts
                              torch.device("cuda" if wants_cuda(tcfg.device) else "cpu"))
    if cache is None:  # auto: small datasets, one process
        from ..data.cache import auto_cache_fits
        cache, why = auto_cache_fits(train_set, world, workers=planned)
        if progress and int(os.environ.get("RANK", "0")) == 0:
            print(f"image cache (train.cache_images auto): {'on' if cache else 'off'}, {why}",
                  flush=True)
    if cache:  # memory-checked first; one copy per node under torchrun
        if world > 1:  # the ranks share it via the group
            from ..runtime.dist import init_distributed
            # the Trainer's own call then finds it joined
            init_distributed(tcfg.device, tcfg.ddp_timeout)
        train_set.cache_images(progress=progress, workers=planned)
        if progress and int(os.environ.get("LOCAL_RANK", "0")) == 0:
            print(train_set.image_cache.summary(), flush=True)
    trainer = Trainer(net, train_set, tcfg, val_set=val_set, val_gt=val_idx.to_coco_dict(),
                      category_ids=train_idx.category_ids, loader_fn=build_loader,
                      resume=resume, progress=progress, task=task,
                      bn_set=DetectionDataset(train_idx, input_size=size, train=False,
                                              aug=None, seed=tcfg.seed))
    return trainer.fit()
