"""Explicit training loop and the thin :class:`Trainer` that owns its state.

The trainer owns model (DDP-wrapped under torchrun), EMA, optimizer, AMP scaler and
schedule.  Each epoch: deterministic sampler seeded by ``seed + epoch``, forward, criterion,
accumulated backward, optimizer step at the scheduled learning rate, EMA update.  After each
epoch rank 0 writes ``last.pt`` atomically (and ``best.pt`` when the EMA's mAP improves).
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
import csv
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from ..data.loader import EpochSampler

from ..runtime.cpu import torch_cpu_has
from ..assign import build_assigner
from ..outputs import atomic_output, clean_stale_temporaries, lock_run_dir
from ..checkpoint import FORMAT, CheckpointError, atomic_save, checkpoint_header, read_checkpoint
from ..config import ConfigError, ModelConfig, TrainConfig, from_dict, to_dict
from ..losses.criterion import DAMOYOLOCriterion
from ..models.heads.zero_head import HeadOutput
from ..ops.depthwise import fast_weight_grad_available
from ..runtime import dist as du
from .cpu_memory import keep_freed_memory
from .ema import ModelEMA
from .optim import CosineSchedule, build_optimizer
from .schedule import resolve_schedule
from ..errors import DamoyoloError

__all__ = ["Trainer", "TrainingDiverged", "EpochSampler", "seed_everything", "sada_progress"]


class TrainingDiverged(DamoyoloError, RuntimeError):
    """A non-finite loss; the last good checkpoint is kept."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    """Every RNG's state as plain data (loads under ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    st = {"python": random.getstate(),
          "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                    "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
          "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = st["numpy"]
    if isinstance(n, dict):
        n = (n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
             n["gauss"])
    np.random.set_state(n)
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def default_workers(workers: int | None, device: torch.device) -> int:
    """Loader workers: ``workers`` when given; else 4, or 0 when training on a CPU with at
    most 4 cores, where the compute already uses every core and a worker process only takes
    time from it (measured on 2 cores: 5 % slower epochs with one worker at 256 px, 1.8x
    slower on a 30-image dataset, where each epoch also pays the worker start-up)."""
    if workers is not None:
        return workers
    from ..runtime.cpu import usable_cpus
    return 0 if device.type == "cpu" and usable_cpus() <= 4 else 4


def _has_depthwise(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
               for m in model.modules())


def autocast_dtype(amp: bool, device: torch.device, model: nn.Module) -> torch.dtype | None:
    """Mixed precision of the forward pass, or ``None`` for float32.

    CUDA: float16 (with loss scaling).  CPU: bfloat16 on a CPU with bfloat16 dot-product
    instructions (AMX tiles, or AVX512-BF16 as on AMD Zen 4), where it runs a training step
    1.2-2.6x faster than float32; no autocast on other CPUs (slower there: the bfloat16
    convolutions are emulated).  Models with depthwise convolutions (the nano presets)
    get bfloat16 only where their depthwise convolutions can stay float32 with the fast
    weight gradient (:mod:`damoyolo.ops.depthwise`, numba installed): those convolutions run
    slower in bfloat16 than the whole step gains.  See docs/training.md and
    docs/benchmarks/training_step.md.
    """
    if not amp:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and _cpu_has_bf16_dot() and (
            not _has_depthwise(model) or fast_weight_grad_available()):
        return torch.bfloat16
    return None


def use_channels_last(setting: bool | None, device: torch.device, model: nn.Module) -> bool:
    """The memory format of training: ``train.channels_last`` when given, else (auto)
    channels_last on CUDA and, on a CPU, only for models with depthwise convolutions.

    On a CPU, channels_last makes the nano presets' steps 1.5-1.9x faster, and they learn as
    the official loop does in it.  damoyolo-t trained in channels_last reached a lower mAP than
    the official loop after the same iterations (docs/benchmarks/learning_parity.md: 0.045
    over seven seeds against the official 0.053), and in NCHW the same as the official, at
    about 1.2x the channels_last step time; so the presets without depthwise convolutions
    train in NCHW on a CPU.
    """
    if setting is not None:
        return bool(setting)
    if device.type == "cpu":
        return _has_depthwise(model)
    return True


STEM_STAGES = 2  # the backbone's stem and first stage


def use_channels_last_stem(setting: bool | None, device: torch.device, model: nn.Module,
                           channels_last: bool) -> bool:
    """Whether a model that trains in NCHW runs its backbone's stem and first stage in
    channels_last (``train.channels_last_stem``; auto: on a CPU, for the models without
    depthwise convolutions, T, S, M and L, whose auto format there is NCHW; a nano preset
    forced to NCHW stays all NCHW unless asked).

    Those stages hold the largest maps with the fewest channels, where torch's NCHW CPU
    convolutions are slowest (the stride-2 ones' backward copies their input to another
    layout): in channels_last a damoyolo-t training step at 256 px takes about 0.92x the time.
    The rest of the model stays NCHW, in which T learns as the official loop does
    (docs/benchmarks/learning_parity.md).  Nothing to do for a model training in
    channels_last, or without a TinyNAS backbone.
    """
    if channels_last or not hasattr(getattr(model, "backbone", None), "channels_last_stages"):
        return False
    if setting is not None:
        return bool(setting)
    return device.type == "cpu" and not _has_depthwise(model)


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


def _cpu_has_bf16_dot() -> bool:
    """AMX tiles or AVX512-BF16 (``vdpbf16ps``): oneDNN's bfloat16 convolutions run natively."""
    return torch_cpu_has("amx_tile", "avx512_bf16")


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
    """

    def __init__(self, model: nn.Module, train_set, cfg: TrainConfig, val_set=None,
                 val_gt: dict | None = None, category_ids: list[int] | None = None,
                 loader_fn: Callable | None = None, resume: str | Path | None = None,
                 progress: bool = True, task=None, bn_set=None):
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
        self.train_set, self.val_set, self.val_gt = train_set, val_set, val_gt
        self.bn_set = bn_set  # training images without augmentation (precise BN)
        self.category_ids = category_ids
        self.progress = progress and du.is_main()
        self.out_dir = Path(cfg.output)
        self.workers = default_workers(cfg.workers, self.device)

        if cfg.keep_freed_memory and self.device.type == "cpu":
            keep_freed_memory()
        self.model = model.to(self.device).train()
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
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.channels_last_stem = use_channels_last_stem(cfg.channels_last_stem, self.device,
                                                         self.model, self.channels_last)
        if self.channels_last_stem:  # before the EMA copy: it evaluates the same way
            self.model.backbone.channels_last_stages = STEM_STAGES
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
            prec = {None: "float32", torch.float16: "float16 autocast",
                    torch.bfloat16: "bfloat16 autocast (CPU with AMX or AVX512-BF16)"}[self.amp_dtype]
            depthwise = _has_depthwise(self.model)
            if self.amp_dtype == torch.bfloat16 and depthwise:
                prec += ", depthwise convolutions in float32"
            layout = ("channels_last" if self.channels_last else
                      "contiguous (NCHW), the backbone's stem and first stage in channels_last"
                      if self.channels_last_stem else "contiguous (NCHW)")
            print(f"  precision {prec}, memory format {layout}", flush=True)
            if self.device.type == "cpu" and depthwise and not fast_weight_grad_available():
                print("note: numba is not installed, so the depthwise convolutions' weight "
                      "gradients use torch's slower kernel (pip install 'damoyolo[train]')",
                      flush=True)
        self.schedule = CosineSchedule(self.base_lr, total, self.plan.warmup_iters,
                                       no_aug_iters, cfg.min_lr_ratio, cfg.warmup_start_lr)
        self.start_epoch = 0
        self.best_map = -1.0
        self.history: list[dict] = []
        self.last_results: list[dict] | None = None  # COCO results of the latest evaluation
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
        self.improved = False  # whether the latest epoch's val_AP beat the best so far
        self._writer = None

    # the resolved schedule's figures the loop uses
    accumulate = property(lambda self: self.plan.accumulate)
    base_lr = property(lambda self: self.plan.base_lr)
    iters_per_epoch = property(lambda self: self.plan.iters_per_epoch)
    no_aug_epochs = property(lambda self: self.plan.no_aug_epochs)

    # ------------------------------------------------------------------ checkpoints
    def _eval_model(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.model

    def state(self, epoch: int) -> dict[str, Any]:
        """Self-describing checkpoint of the end of ``epoch`` (0-based)."""
        return {**checkpoint_header(self.model, self.category_ids),
                "ema": self.ema.model.state_dict() if self.ema else None,
                "ema_state": {"updates": self.ema.updates} if self.ema else None,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "train_config": to_dict(self.cfg),
                "task": self.task.module.state_dict() if self.task is not None else None,
                "epoch": epoch, "iteration": (epoch + 1) * self.iters_per_epoch,
                "best_map": self.best_map, "history": self.history, "rng": _rng_state()}

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
            _set_rng_state(ck["rng"])
        elif isinstance(ranks, list) and len(ranks) == self.world:  # each rank its own streams
            _set_rng_state(ranks[self.rank])
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

    def evaluate(self) -> dict[str, float] | None:
        if self.val_set is None or self.val_gt is None or not du.is_main():
            return None
        from ..eval import Predictor, evaluate
        if self.bn_set is not None and self.plan.precise_bn > 0:
            self._precise_bn()
        loader = self.loader_fn(self.val_set, batch_size=max(1, self.cfg.batch_size // self.world),
                                workers=self.workers, shuffle=False, seed=self.cfg.seed)
        res = evaluate(Predictor.from_model(self._eval_model(), device=self.device), loader,
                       self.val_gt, self.category_ids)
        self.last_results = res.results
        return res.metrics

    def _precise_bn(self) -> None:
        """Recompute the evaluated model's BatchNorm statistics on a fixed, seeded subset of
        the training images (no augmentation)."""
        from torch.utils.data import Subset

        from .bn import recompute_bn_stats
        n = min(self.plan.precise_bn, len(self.bn_set))
        pick = np.random.default_rng((self.cfg.seed, 1)).permutation(len(self.bn_set))[:n]
        loader = self.loader_fn(Subset(self.bn_set, pick.tolist()),
                                batch_size=max(1, self.cfg.batch_size // self.world),
                                workers=self.workers, shuffle=False, seed=self.cfg.seed)
        recompute_bn_stats(self._eval_model(), loader, n, self.device, self.channels_last)

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
        self._writer = self._tensorboard()
        record: dict[str, Any] = {}
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
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        if du.is_main() and self.history:
            self.plot()
        return record

    # ------------------------------------------------------------------ epoch-end callbacks
    def epoch_end_callbacks(self) -> list[Callable[[int, dict], None]]:
        """What runs after each epoch, in this order, as ``callback(epoch, record)``:
        evaluate (adds ``val_*`` and ``eval_s`` to the record when due), log (results.csv,
        TensorBoard, console), best (tracks the best ``val_AP``), checkpoint (``last.pt``, and
        ``best.pt`` when it improved).  All but the evaluation run on rank 0 only.  The plots
        are drawn once, after the last epoch (:meth:`plot`)."""
        return [self._eval_callback, self._log_callback, self._best_callback,
                self._checkpoint_callback]

    def _eval_callback(self, epoch: int, record: dict) -> None:
        every, last = self.cfg.eval_interval, epoch + 1 == self.cfg.epochs
        if every <= 0 or not ((epoch + 1) % every == 0 or last):
            return
        t1 = time.time()
        metrics = self.evaluate()
        if metrics is not None:
            record.update({f"val_{k}": v for k, v in metrics.items()})
            record["eval_s"] = time.time() - t1

    def _log_callback(self, epoch: int, record: dict) -> None:
        if du.is_main():
            self._log(record, self._writer)

    def _best_callback(self, epoch: int, record: dict) -> None:
        self.improved = du.is_main() and "val_AP" in record and record["val_AP"] > self.best_map
        if self.improved:
            self.best_map = record["val_AP"]

    def _checkpoint_callback(self, epoch: int, record: dict) -> None:
        # every rank's RNG streams, so that a resumed multi-process run continues exactly
        rngs = du.gather_objects(_rng_state()) if du.is_distributed() else None
        if not du.is_main():
            return
        st = self.state(epoch)
        if rngs is not None:
            st["rng_ranks"] = rngs
        atomic_save(st, self.out_dir / "last.pt")
        if self.improved:
            atomic_save(st, self.out_dir / "best.pt")

    def plot(self) -> list[Path]:
        """Write ``results.png`` (losses, lr, mAP per epoch) and, after an evaluation,
        ``pr_curves.png`` (per-class precision-recall at IoU 0.5) into the run folder."""
        try:
            from .plots import plot_history, plot_pr_curves
            paths = [plot_history(self.history, self.out_dir / "results.png")]
            if self.last_results is not None and self.val_gt is not None:
                paths.append(plot_pr_curves(self.val_gt, self.last_results,
                                            self.model.class_names or [],
                                            self.out_dir / "pr_curves.png", self.category_ids))
        except ImportError as e:
            if self.progress:
                print(f"plots skipped ({e}); pip install 'damoyolo[train]' to get them")
            return []
        if self.progress:
            print("plots: " + ", ".join(str(p) for p in paths), flush=True)
        return paths

    # ------------------------------------------------------------------ logging
    def _tensorboard(self):
        if not (self.cfg.tensorboard and du.is_main()):
            return None
        try:  # the tensorboard package is optional
            from torch.utils.tensorboard import SummaryWriter
            return SummaryWriter(str(self.out_dir / "tensorboard"))
        except Exception as e:
            print(f"warning: train.tensorboard is set but TensorBoard did not start "
                  f"({type(e).__name__}: {e}); training goes on without it "
                  f"(pip install tensorboard)", flush=True)
            return None

    def _log(self, record: dict, writer) -> None:
        path = self.out_dir / "results.csv"
        keys = list(record)
        rows = []
        if path.exists():
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < record["epoch"]]
            for r in rows:
                keys += [k for k in r if k not in keys]
        rows.append(record)
        with atomic_output(path) as tmp, tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        if writer is not None:
            for k, v in record.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    writer.add_scalar(k, v, record["epoch"])
        if not self.progress:
            return
        msg = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in record.items())
        print(msg, flush=True)


