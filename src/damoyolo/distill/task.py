"""Distillation task for the trainer: frozen teacher, align module, scheduled feature loss.

The task plugs into :class:`damoyolo.engine.Trainer` (``task=``): the trainer optimises the
student together with ``task.module`` (the align convolutions), wraps both in DDP, and
saves ``task.module`` in its checkpoints under ``"task"``.  The teacher is not a submodule
of anything the trainer sees: it is never optimised, never saved, never switched to train
mode, and runs under ``torch.no_grad``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
from torch import Tensor

from ..config import ConfigError, DistillConfig
from ..errors import MissingFileError
from ..models.detector import DAMOYOLO
from ..models.heads.zero_head import HeadOutput
from .losses import METHODS, FeatureDistillLoss

__all__ = ["DistillTask", "distill_weight", "load_teacher"]


class _GradTap(torch.autograd.Function):
    """Identity whose backward reports the squared norm of the incoming gradient to
    ``owner._tapped(key, squared_norm)``."""

    @staticmethod
    def forward(ctx, x: Tensor, owner, key: str) -> Tensor:
        ctx.owner, ctx.key = owner, key
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        ctx.owner._tapped(ctx.key, grad.detach().float().pow(2).sum())
        return grad, None, None


def distill_weight(iteration: int, phase_end: int, weight: float, final_ratio: float) -> float:
    """Loss weight at ``iteration`` (0-based, counted over the whole run).

    Cosine decay from ``weight`` at iteration 0 towards ``weight * final_ratio`` at
    ``phase_end`` (the first iteration of the no-aug phase); 0 from ``phase_end`` on.
    """
    if iteration >= phase_end or phase_end <= 0:
        return 0.0
    cos = 0.5 * (1.0 + math.cos(math.pi * iteration / phase_end))
    return weight * (final_ratio + (1.0 - final_ratio) * cos)


def load_teacher(spec: str, teacher_model: str = "", device: str | torch.device = "cpu"
                 ) -> DAMOYOLO:
    """The teacher named by ``spec``: a checkpoint (ours or official) or a preset name.

    teacher_model: preset of an official checkpoint's architecture (official files do not
    record it); optional for our checkpoints.  A preset name builds a randomly initialised
    teacher (only useful for testing the pipeline); a warning says so.
    """
    from ..checkpoint import ArchitectureUnknownError, CheckpointError, load_model
    from ..models.factory import build_model
    from ..presets import PRESETS
    path = Path(spec)
    if path.is_file():
        try:
            return load_model(path, model=teacher_model or None, device=device)
        except ArchitectureUnknownError:
            raise CheckpointError(f"teacher {path}: an official checkpoint; name its "
                                  f"architecture with --teacher-model (e.g. damoyolo-s)"
                                  ) from None
    if spec in PRESETS:
        warnings.warn(f"teacher {spec!r} is a preset name: the teacher has random weights "
                      f"(useful only to test the pipeline; pass a trained checkpoint)",
                      stacklevel=2)
        return build_model(spec).to(device).eval()
    raise MissingFileError(f"teacher {spec!r}: no such checkpoint file, nor a preset name "
                           f"(valid: {', '.join(PRESETS)})")


class DistillTask:
    """Feature distillation of a student from a frozen ``teacher`` on the neck outputs.

    Training-task protocol (see :class:`damoyolo.engine.trainer.Trainer`):
    ``bind(model, device, total_iters, no_aug_iters)`` once, then per iteration
    ``forward(model, images, iteration) -> (HeadOutput, {"loss_distill": scalar})``.
    ``module`` (after ``bind``) holds the trainable align convolutions.  The teacher is
    re-parameterised in place (deploy form), frozen and kept in eval mode.
    """

    loss_names = ("loss_distill",)

    def __init__(self, teacher: DAMOYOLO, cfg: DistillConfig = DistillConfig()):
        if cfg.method not in METHODS:
            raise ConfigError(f"unknown distill.method {cfg.method!r}; valid: {', '.join(METHODS)}")
        if cfg.weight < 0 or not 0 <= cfg.final_ratio <= 1:
            raise ConfigError(f"distill.weight must be >= 0 and distill.final_ratio in [0, 1], "
                              f"got {cfg.weight} and {cfg.final_ratio}")
        self.cfg = cfg
        # frozen and only ever run forward: deploy form (RepConv branches and BN folded) is
        # faster with the same outputs
        self.teacher = teacher.eval().reparameterize()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.module: FeatureDistillLoss | None = None
        self.phase_end = 0
        self._taps: dict[tuple[str, int], Tensor] = {}  # this backward's squared norms
        self._last_weights = torch.zeros(0)  # per level, as applied in the latest forward
        self._levels = 0
        self.levels = None if cfg.levels is None else tuple(int(i) for i in cfg.levels)
        if self.levels is not None and (not self.levels or min(self.levels) < 0):
            raise ConfigError(f"distill.levels must name neck levels (0 = stride 8), got "
                              f"{cfg.levels}")
        if not 0 <= cfg.balance_momentum < 1:
            raise ConfigError(f"distill.balance_momentum must be in [0, 1), got "
                              f"{cfg.balance_momentum}")

    # ------------------------------------------------------------------ set-up
    @torch.no_grad()
    def _channels(self, net: DAMOYOLO, size: int, device: torch.device) -> list[tuple[int, ...]]:
        was = net.training
        net.eval()  # no BN statistics update for the probe
        try:
            x = torch.zeros(1, 3, size, size, device=device)
            return [tuple(f.shape[1:]) for f in net.features(x)]
        finally:
            net.train(was)

    def bind(self, model: DAMOYOLO, device: torch.device, total_iters: int,
             no_aug_iters: int) -> None:
        """Move the teacher to ``device``, check the feature maps align, build the align module.

        Raises ``ValueError`` when the teacher's feature maps (levels, strides) do not match
        the student's.
        """
        self.teacher.to(device).eval()
        s_cfg, t_cfg = model.cfg, self.teacher.cfg
        if tuple(s_cfg.head.strides) != tuple(t_cfg.head.strides):
            raise ConfigError(f"teacher {t_cfg.name} has feature strides {t_cfg.head.strides}, "
                              f"student {s_cfg.name} {s_cfg.head.strides}: feature maps do not "
                              f"align")
        size = 2 * max(s_cfg.head.strides)
        s_shapes = self._channels(model, size, device)
        t_shapes = self._channels(self.teacher, size, device)
        if len(s_shapes) != len(t_shapes) or any(a[1:] != b[1:]
                                                 for a, b in zip(s_shapes, t_shapes)):
            raise ConfigError(f"teacher {t_cfg.name} feature maps {t_shapes} do not align with "
                              f"student {s_cfg.name} feature maps {s_shapes} on a "
                              f"{size}x{size} input")
        if tuple(s_cfg.input_size) != tuple(t_cfg.input_size):
            warnings.warn(f"teacher {t_cfg.name} was built for {tuple(t_cfg.input_size)} inputs; "
                          f"it sees the student's {tuple(s_cfg.input_size)} images", stacklevel=2)
        c = self.cfg
        # the align convolutions draw their initial weights from a stream of their own, so
        # the student's run (augmentation, loader, ...) is the same with or without a teacher:
        # they are built on the CPU from its generator, reseeded inside a fork that restores
        # it (torch.manual_seed would also reseed every accelerator's generator, unrestored)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(torch.initial_seed() % 2**63 + 1)
            self.module = FeatureDistillLoss([s[0] for s in s_shapes], [t[0] for t in t_shapes],
                                             method=c.method, temperature=c.temperature,
                                             normalize=c.normalize, balance=c.balance).to(device)
        if self.levels is not None and max(self.levels) >= len(s_shapes):
            raise ConfigError(f"distill.levels {self.levels}: the student has {len(s_shapes)} "
                              f"neck levels (0..{len(s_shapes) - 1})")
        self.phase_end = total_iters - no_aug_iters
        if self.phase_end <= 0:
            warnings.warn("no strong-augmentation phase (train.no_aug_epochs >= train.epochs): "
                          "the teacher is never used", stacklevel=2)

    # ------------------------------------------------------------------ per iteration
    def weight(self, iteration: int) -> float:
        """The schedule's weight at ``iteration`` (with ``balance``: the target ratio of the
        distillation gradient's norm to the detection gradient's at the neck outputs)."""
        return distill_weight(iteration, self.phase_end, self.cfg.weight, self.cfg.final_ratio)

    def _tapped(self, key: tuple[str, int], sq: Tensor) -> None:
        """A tapped gradient's squared norm; once both branches of every level have reported
        (the end of this backward), fold the norms into the running averages."""
        self._taps[key] = sq
        if len(self._taps) < 2 * self._levels:
            return
        mod = self.module
        lv = range(self._levels)
        det = torch.stack([self._taps[("det", i)] for i in lv]).sqrt().to(mod.grad_norms)
        kd = torch.stack([self._taps[("kd", i)] for i in lv]).sqrt().to(mod.grad_norms)
        used = self._last_weights.to(mod.grad_norms)
        measured = used > 1e-12  # a level applied at weight 0 tells nothing of its gradient
        kd = torch.where(measured, kd / used.clamp(min=1e-12), mod.grad_norms[1])
        now = torch.stack([det, kd])
        self._taps.clear()
        m = self.cfg.balance_momentum
        fresh = (mod.grad_norms[1] <= 0).unsqueeze(0)
        avg = torch.where(fresh, now, m * mod.grad_norms + (1 - m) * now)
        # an overflowed step (float16) is not measured: the averages stay; chosen on the
        # device, without a host synchronisation every iteration
        mod.grad_norms.copy_(torch.where(torch.isfinite(now).all(), avg, mod.grad_norms))

    def _level_weights(self, w: float) -> Tensor:
        """Per level, the loss weight that makes the distillation gradient at that neck output
        ``w`` times the detection gradient there (running averages); ``w`` itself for a level
        not yet measured."""
        det_avg, kd_avg = self.module.grad_norms[0], self.module.grad_norms[1]
        ratio = det_avg / kd_avg.clamp(min=1e-12)
        return w * torch.where(kd_avg > 0, ratio, torch.ones_like(ratio))

    def forward(self, model: DAMOYOLO, images: Tensor, iteration: int
                ) -> tuple[HeadOutput, dict[str, Tensor]]:
        """Student outputs and the weighted distillation loss at ``iteration``.

        images: (B, 3, H, W) float 0..255, the student's batch (the teacher sees the same).
        In the no-aug phase the teacher is not run and the loss is an exact 0 that still
        touches the align parameters, so DDP's gradient reduction stays complete.
        """
        if self.module is None:
            raise RuntimeError("DistillTask.bind() must be called before forward()")
        w = self.weight(iteration)
        if w <= 0.0:
            out = model(images)
            zero = sum(p.sum() for p in self.module.parameters()) * 0.0
            return out, {"loss_distill": zero}
        feats = model.features(images)
        weights = None
        if self.cfg.balance:
            self._levels = len(feats)
            weights = self._level_weights(w)
            self._taps.clear()
            out = model.head([_GradTap.apply(f, self, ("det", i)) for i, f in enumerate(feats)])
            feats = [_GradTap.apply(f, self, ("kd", i)) for i, f in enumerate(feats)]
        else:
            out = model.head(feats)
        if self.levels is not None:  # levels left out of distillation: weight 0
            mask = torch.tensor([float(i in self.levels) for i in range(len(feats))],
                                device=feats[0].device)
            weights = mask * (w if weights is None else weights)
        if self.cfg.balance:
            self._last_weights = weights.detach().clone()
        if self.teacher.training:
            self.teacher.eval()
        with torch.no_grad():
            t_feats = self.teacher.features(images)
        if weights is None:
            return out, {"loss_distill": self.module(feats, t_feats) * w}
        return out, {"loss_distill": self.module(feats, t_feats, weights)}
