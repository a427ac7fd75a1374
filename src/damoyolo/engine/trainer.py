"""Explicit training loop and the thin :class:`Trainer` that owns its state.

The trainer owns model (DDP-wrapped under torchrun), EMA, optimizer, AMP scaler and
schedule.  Each epoch: deterministic sampler seeded by ``seed + epoch``, forward, criterion,
accumulated backward, optimizer step at the scheduled learning rate, EMA update.  After each
epoch its callbacks (:mod:`damoyolo.engine.callbacks`) evaluate, log, and write ``last.pt``
atomically on rank 0 (and ``best.pt`` when the EMA's mAP improves); the hardware policy
(precision, memory format, loader workers) is :mod:`damoyolo.engine.policy`.
``resume`` restarts from the epoch after the last checkpoint with every state restored, so a
run killed at any point continues exactly.

An optional *training task* (e.g. :class:`damoyolo.distill.DistillTask`) extends the loop
without touching the model: it is bound once with
``task.bind(model, device, total_iters, no_aug_iters)`` and then computes each iteration's
forward, ``task.forward(model, images, iteration) -> (HeadOutput, {name: loss})``; its named
losses are added to the detection loss.  ``task.module`` (extra trainable modules) is
optimised with the model, wrapped in DDP with it, and saved in checkpoints as ``"task"``;
it is not part of the model's state dict, so exported models never contain it.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..assign import build_assigner
from ..checkpoint import FORMAT, CheckpointError, checkpoint_header, read_checkpoint
from ..config import ConfigError, ModelConfig, TrainConfig, from_dict, to_dict
from ..data.loader import EpochSampler
from ..errors import DamoyoloError
from ..losses.criterion import DAMOYOLOCriterion
from ..models.heads.zero_head import HeadOutput
from ..outputs import clean_stale_temporaries, lock_run_dir
from ..runtime import dist as du
from .callbacks import (BestModel, Callback, Checkpoint, Evaluate, Log, Plots,
                        default_callbacks, open_tensorboard)
from .cpu_memory import keep_freed_memory
from .ema import ModelEMA
from .optim import CosineSchedule, build_optimizer
from .policy import (autocast_dtype, default_workers, describe, to_memory_format,
                     use_channels_last, use_channels_last_stem)
from .rng import rng_state, seed_everything, set_rng_state
from .schedule import resolve_schedule

__all__ = ["Trainer", "TrainingDiverged", "EpochSampler", "seed_everything", "sada_progress"]


class TrainingDiverged(DamoyoloError, RuntimeError):
    """A non-finite loss; the last good checkpoint is kept."""


def _match_state_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter optimizer state tensor its parameter's strides (the fused
    kernels expect them alike; a checkpoint may come from a run in the other memory format)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p)
            if not st:
                continue
            for k, v in st.items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


class _ModelWithTask(nn.Module):
    """The model and a task's trainable modules as one module (one optimizer, one DDP)."""

    def __init__(self, model: nn.Module, task):
        super().__init__()
        self.model = model
        self.task_module = task.module
        self._task = [task]  # plain list: the task (and its teacher) are not submodules

    def forward(self, images, iteration: int):
        return self._task[0].forward(self.model, images, iteration)


def _targets_to(targets: list[dict], device: torch.device) -> list[dict]:
    return [{**t, "boxes": t["boxes"].to(device), "labels": t["labels"].to(device)}
            for t in targets]


def sada_progress(epoch: int, aug_epochs: int) -> float:
    """SADA's ramp: op probabilities scale with the fraction of the augmented epochs done
    (the official schedule uses the iteration; the epoch's midpoint is used here)."""
    return (epoch + 0.5) / aug_epochs


class Trainer:
    """Train ``model`` on ``train_set`` with ``cfg``.

    model: a :class:`~damoyolo.DAMOYOLO` (class set already matching the data).
    train_set / val_set: datasets following the data contract (``(image, target)`` items;
    ``train_set.set_strong_augment(bool)`` when it has strong augmentation).
    loader_fn: ``build_loader(dataset, batch_size, workers, shuffle, seed, drop_last, sampler)``
    (default: ``damoyolo.data.build_loader``).
    val_gt: COCO dict of the validation ground truth (needed for mAP); category_ids maps
    contiguous labels to the dataset's ids.
    resume: path of a ``last.pt`` to continue from.
    task: optional training task (see the module docstring), e.g. distillation.
    bn_set: the training images without augmentation (precise BN before each evaluation).
    workers: loader workers per rank (default: :func:`~damoyolo.engine.policy.default_workers`).

    What runs after each epoch and around the loop (evaluation, the log, the best model,
    checkpoints, plots) is :attr:`callbacks`, see :mod:`damoyolo.engine.callbacks`.
    """

    def __init__(self, model: nn.Module, train_set, cfg: TrainConfig, val_set=None,
                 val_gt: dict | None = None, category_ids: list[int] | None = None,
                 loader_fn: Callable | None = None, resume: str | Path | None = None,
                 progress: bool = True, task=None, bn_set=None, *, workers: int | None = None):
        self.cfg = cfg
        self.device, self.local_rank = du.init_distributed(cfg.device, cfg.ddp_timeout)
        self.rank, self.world = du.rank(), du.world_size()
        if cfg.batch_size % self.world:
            raise ConfigError(f"train.batch_size={cfg.batch_size} is not divisible by the "
                              f"{self.world} processes")
        seed_everything(cfg.seed + self.rank)
        if loader_fn is None:
            from ..data import build_loader as loader_fn  # noqa: N813
        self.loader_fn = loader_fn
        self.train_set = train_set
        self.category_ids = category_ids
        self.progress = progress and du.is_main()
        self.out_dir = Path(cfg.output)
        self.workers = default_workers(cfg.workers if workers is None else workers, self.device)
        self.callbacks: list[Callback] = default_callbacks(val_set, val_gt, category_ids, bn_set)

        if cfg.keep_freed_memory and self.device.type == "cpu":
            keep_freed_memory()
        self.model = model.to(self.device).train()
        if category_ids is not None:  # the checkpoints take the ids from the model
            self.model.category_ids = [int(c) for c in category_ids]
        # under a process group (also of one process); SyncBatchNorm needs CUDA (DDP refuses
        # it on CPU modules), so on CPU the flag keeps plain per-process BatchNorm
        if cfg.sync_bn and du.is_distributed():
            if self.device.type == "cuda":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            elif du.is_main():
                print("note: train.sync_bn needs CUDA; these CPU processes keep per-process "
                      "BatchNorm", flush=True)
        self.sampler = EpochSampler(len(train_set), cfg.seed, self.rank, self.world)
        self.plan = resolve_schedule(cfg, len(self.sampler), self.world)
        total, no_aug_iters = self.plan.total_iters, self.plan.no_aug_iters
        if self.progress:
            print("\n".join(self.plan.lines()), flush=True)
            for w in self.plan.warnings():
                print(f"warning: {w}", flush=True)
        self.channels_last = use_channels_last(cfg.channels_last, self.device, self.model)
        self.channels_last_stem = use_channels_last_stem(cfg.channels_last_stem, self.device,
                                                         self.model, self.channels_last)
        # before the EMA copy: it evaluates the same way
        self.model = to_memory_format(self.model, self.channels_last, self.channels_last_stem)
        self.task = task
        self.net = self.model  # what is optimised and DDP-wrapped: the model (+ task modules)
        if task is not None:
            task.bind(self.model, self.device, total, no_aug_iters)
            self.net = _ModelWithTask(self.model, task)
        self.optimizer = build_optimizer(self.net, cfg.optimizer, self.base_lr, cfg.momentum,
                                         cfg.weight_decay, cfg.nesterov)
        self.ema = (ModelEMA(self.model, self.plan.ema_momentum, self.plan.ema_ramp)
                    if cfg.ema else None)
        self.amp_dtype = autocast_dtype(cfg.amp, self.device, self.model)
        self.use_amp = self.amp_dtype is not None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if self.progress:
            print("\n".join(describe(self.amp_dtype, self.device, self.model,
                                     self.channels_last, self.channels_last_stem)), flush=True)
        self.schedule = CosineSchedule(self.base_lr, total, self.plan.warmup_iters,
                                       no_aug_iters, cfg.min_lr_ratio, cfg.warmup_start_lr)
        self.start_epoch = 0
        self.best_map = -1.0  # the best val_AP so far (callbacks.BestModel)
        self.history: list[dict] = []
        if resume is not None:
            self._resume(resume)
        self.ddp_model = self.net
        if du.is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        self.criterion = DAMOYOLOCriterion(
            self.model.head, assigner=build_assigner(cfg.assigner, self.model.head.num_classes))
        # the losses the progress bar shows: the criterion's, then the task's
        self.loss_names = tuple(self.criterion.loss_names) + tuple(
            getattr(task, "loss_names", ()))

    # the resolved schedule's figures the loop uses
    accumulate = property(lambda self: self.plan.accumulate)
    base_lr = property(lambda self: self.plan.base_lr)
    iters_per_epoch = property(lambda self: self.plan.iters_per_epoch)
    no_aug_epochs = property(lambda self: self.plan.no_aug_epochs)

    # ------------------------------------------------------------------ checkpoints
    def eval_model(self) -> nn.Module:
        """The model evaluated and exported: the EMA's when there is one."""
        return self.ema.model if self.ema is not None else self.model

    def state(self, epoch: int) -> dict[str, Any]:
        """Self-describing checkpoint of the end of ``epoch`` (0-based)."""
        return {**checkpoint_header(self.model),
                "ema": self.ema.model.state_dict() if self.ema else None,
                "ema_state": {"updates": self.ema.updates} if self.ema else None,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "train_config": to_dict(self.cfg),
                "task": self.task.module.state_dict() if self.task is not None else None,
                "epoch": epoch, "iteration": (epoch + 1) * self.iters_per_epoch,
                "best_map": self.best_map, "history": self.history, "rng": rng_state()}

    def _resume(self, path: str | Path) -> None:
        ck = read_checkpoint(path)
        if ck.get("format") != FORMAT or "optimizer" not in ck:
            raise CheckpointError(f"{path}: not a damoyolo training checkpoint (use it for "
                                  f"fine-tuning instead of --resume)")
        stored = from_dict(ModelConfig, ck["model_config"])
        if stored != self.model.cfg:
            raise CheckpointError(f"{path}: checkpoint model {stored.name} with "
                                  f"{stored.head.num_classes} classes does not match this run")
        if (ck.get("task") is not None) != (self.task is not None):
            raise CheckpointError(f"{path}: the checkpoint was written by a run "
                                  f"{'with' if ck.get('task') is not None else 'without'} a training "
                                  f"task (distillation); resume it with the same teacher settings")
        self.model.load_state_dict(ck["model"])
        if self.task is not None:
            try:
                self.task.module.load_state_dict(ck["task"])
            except RuntimeError:
                raise CheckpointError(f"{path}: the distillation state does not fit these "
                                      f"settings (distill.balance or the teacher changed); "
                                      f"resume with the run's own settings") from None
        if self.ema is not None and ck.get("ema") is not None:
            self.ema.model.load_state_dict(ck["ema"])
            self.ema.updates = int(ck["ema_state"]["updates"])
        self.optimizer.load_state_dict(ck["optimizer"])
        _match_state_layout(self.optimizer)  # a run saved in the other memory format
        planned = self.schedule.state_dict()
        self.schedule.load_state_dict(ck["scheduler"])
        if self.schedule.state_dict() != planned:  # resumed with other epochs / lr / batch
            self.schedule.load_state_dict(planned)
            if self.progress:
                print(f"note: {path} was written with another learning-rate schedule (epochs, "
                      f"lr or batch changed); the schedule of this run's settings is used",
                      flush=True)
        self.scaler.load_state_dict(ck["scaler"])
        self.start_epoch = int(ck["epoch"]) + 1
        self.best_map = float(ck.get("best_map", -1.0))
        self.history = list(ck.get("history", []))
        ranks = ck.get("rng_ranks")
        if self.world == 1:
            set_rng_state(ck["rng"])
        elif isinstance(ranks, list) and len(ranks) == self.world:  # each rank its own streams
            set_rng_state(ranks[self.rank])
        elif self.progress:
            print(f"note: {path} holds the random streams of {len(ranks or [1])} process(es), "
                  f"not {self.world}: the resumed run continues with fresh streams", flush=True)

    # ------------------------------------------------------------------ loop
    def _loader(self):
        per_rank = self.cfg.batch_size // self.world
        return self.loader_fn(self.train_set, batch_size=per_rank, workers=self.workers,
                              shuffle=False, seed=self.cfg.seed, drop_last=False,
                              sampler=self.sampler)

    def _set_strong_aug(self, enabled: bool) -> None:
        fn = getattr(self.train_set, "set_strong_augment", None)
        if fn is not None:
            fn(enabled)

    def _set_progress(self, epoch: int, aug_epochs: int) -> None:
        fn = getattr(self.train_set, "set_progress", None)
        if fn is not None and aug_epochs > 0:
            fn(sada_progress(epoch, aug_epochs))

    def train_one_epoch(self, epoch: int, loader) -> dict[str, float]:
        cfg = self.cfg
        self.sampler.set_epoch(epoch)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        sums: dict[str, float] = {}
        n = 0
        bar = loader
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(loader, total=self.iters_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       dynamic_ncols=True)
        self.optimizer.zero_grad(set_to_none=True)
        skipped: list[str] = []
        for i, (images, targets) in enumerate(bar):
            it = epoch * self.iters_per_epoch + i
            for t in targets:
                skipped += t.get("skipped", ())
            images = images.to(self.device, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = _targets_to(targets, self.device)
            step = (i + 1) % self.accumulate == 0 or i + 1 == self.iters_per_epoch
            sync = (self.ddp_model.no_sync() if (self.world > 1 and not step)
                    else contextlib.nullcontext())
            with sync:
                with torch.autocast(self.device.type, dtype=self.amp_dtype,
                                    enabled=self.use_amp):
                    if self.task is None:
                        out, extra = self.ddp_model(images), {}
                    else:
                        out, extra = self.ddp_model(images, it)
                if self.use_amp:  # assignment and losses in float32
                    out = HeadOutput([c.float() for c in out.cls], [r.float() for r in out.reg])
                losses = self.criterion(out, targets)
                if extra:
                    losses = {**losses, **extra,
                              "loss": losses["loss"] + sum(extra.values())}
                loss = losses["loss"]
                bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=self.device)
                if float(du.all_reduce_sum(bad)) > 0:
                    raise TrainingDiverged(
                        f"non-finite loss at epoch {epoch + 1}, iteration {i + 1} "
                        f"({ {k: float(v.detach()) for k, v in losses.items()} }); the last good "
                        f"checkpoint is {self.out_dir / 'last.pt'} - lower the learning rate "
                        f"(train.base_lr_per_img) or check the labels")
                self.scaler.scale(loss / self.accumulate).backward()
            if step:
                lr = self.schedule(it)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                if cfg.grad_clip > 0:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                if self.ema is not None:
                    self.ema.update(self.model)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n += 1
            if self.progress:
                bar.set_postfix({k.replace("loss_", ""): f"{sums[k] / n:.3f}"
                                 for k in self.loss_names if k in sums}
                                | {"lr": f"{self.optimizer.param_groups[0]['lr']:.2e}"})
        if skipped:  # each rank reports what its own samples met
            print(f"warning: epoch {epoch + 1}: {len(skipped)} unreadable image(s) skipped, "
                  f"others trained in their place (first: {skipped[0]})", file=sys.stderr)
        return {k: v / max(n, 1) for k, v in sums.items()} | {
            "lr": self.optimizer.param_groups[0]["lr"]}

    def fit(self) -> dict[str, Any]:
        """Run the remaining epochs; returns the last epoch's record (losses and metrics)."""
        cfg = self.cfg
        no_aug_from = cfg.epochs - self.no_aug_epochs
        strong = self.start_epoch < no_aug_from
        self._set_strong_aug(strong)
        loader = self._loader()
        with du.failures_shared():  # a rank's error ends every rank with its message
            lock = contextlib.nullcontext()
            if du.is_main():
                self.out_dir.mkdir(parents=True, exist_ok=True)
                lock = lock_run_dir(self.out_dir)  # one run at a time writes here
            with lock:
                if du.is_main():
                    clean_stale_temporaries(self.out_dir)  # a kill during an earlier save
                return self._fit(loader, strong, no_aug_from)

    def _fit(self, loader, strong: bool, no_aug_from: int) -> dict[str, Any]:
        cfg = self.cfg
        for callback in self.callbacks:
            callback.on_fit_start(self)
        record: dict[str, Any] = {}
        completed = False
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                if strong and epoch >= no_aug_from:
                    strong = False
                    self._set_strong_aug(False)
                    loader = self._loader()  # workers must see the switch
                if strong:  # workers are not persistent: each epoch's workers see this
                    self._set_progress(epoch, no_aug_from)
                t0 = time.time()
                record = {"epoch": epoch + 1, **self.train_one_epoch(epoch, loader)}
                record["time_s"] = time.time() - t0
                self.history.append(record)  # the callbacks complete this same record
                for callback in self.epoch_end_callbacks():
                    callback(epoch, record)
                du.barrier()
            completed = True
        finally:
            for callback in self.callbacks:
                callback.on_fit_end(self, completed)
        return record

    # ------------------------------------------------------------------ callbacks
    def epoch_end_callbacks(self) -> list[Callable[[int, dict], None]]:
        """What runs after each epoch, in order, as ``callback(epoch, record)``: the
        ``on_epoch_end`` of each of :attr:`callbacks` (by default evaluate, log, best model,
        checkpoint; see :mod:`damoyolo.engine.callbacks`)."""
        return [functools.partial(c.on_epoch_end, self) for c in self.callbacks]

    def _callback(self, kind: type) -> Any:
        return next((c for c in self.callbacks if isinstance(c, kind)), None)

    # the default callbacks' epoch-end steps by name, as callback(epoch, record)
    def _eval_callback(self, epoch: int, record: dict) -> None:
        self._callback(Evaluate).on_epoch_end(self, epoch, record)

    def _log_callback(self, epoch: int, record: dict) -> None:
        self._callback(Log).on_epoch_end(self, epoch, record)

    def _best_callback(self, epoch: int, record: dict) -> None:
        self._callback(BestModel).on_epoch_end(self, epoch, record)

    def _checkpoint_callback(self, epoch: int, record: dict) -> None:
        self._callback(Checkpoint).on_epoch_end(self, epoch, record)

    def evaluate(self) -> dict[str, float] | None:
        """Evaluate now (:meth:`damoyolo.engine.callbacks.Evaluate.evaluate`)."""
        ev = self._callback(Evaluate)
        return ev.evaluate(self) if ev is not None else None

    def plot(self) -> list[Path]:
        """Write ``results.png`` and, after an evaluation, ``pr_curves.png`` into the run
        folder (:class:`damoyolo.engine.callbacks.Plots`)."""
        return Plots(self._callback(Evaluate)).draw(self)

    def _tensorboard(self):
        """The TensorBoard writer of the epoch log (``None`` when off or not starting)."""
        return open_tensorboard(self.cfg.tensorboard, self.out_dir)
