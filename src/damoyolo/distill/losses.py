"""Feature-distillation losses on neck outputs: align module, dynamic temperature, CWD, mimic.

All features are lists over pyramid levels (stride 8, 16, 32) of tensors ``(N, C, H, W)``;
student and teacher levels must have the same ``N, H, W`` (the align module maps the
student's channels to the teacher's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ConfigError

__all__ = ["channel_normalize", "cwd_loss", "mimic_loss", "FeatureDistillLoss", "METHODS"]

METHODS = ("cwd", "mimic")


def channel_normalize(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Channel-wise dynamic temperature: ``(x - mean_c) / sqrt(var_c + eps)``.

    x: (N, C, H, W).  Mean and (biased) variance are taken per channel over the batch and
    all positions, i.e. batch-norm statistics without affine parameters; the per-channel
    std thereby acts as that channel's softmax temperature in CWD.
    """
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps)


def _check_pair(s: Tensor, t: Tensor, level: int) -> None:
    if s.shape != t.shape:
        raise ValueError(f"distillation level {level}: student feature {tuple(s.shape)} does "
                         f"not match teacher feature {tuple(t.shape)}")


def cwd_loss(student: list[Tensor], teacher: list[Tensor], tau: float = 1.0) -> Tensor:
    """Channel-wise distillation, summed over levels.

    Per level: each (image, channel) map is a distribution ``softmax(x / tau)`` over its
    H*W positions; the loss is ``tau^2 * sum KL(p_teacher || p_student) / (N * C)``.
    Zero exactly when each student map equals the teacher's up to a per-map constant.
    """
    total = student[0].new_zeros(())
    for level, (s, t) in enumerate(zip(student, teacher)):
        _check_pair(s, t, level)
        n, c, h, w = s.shape
        s_log = F.log_softmax(s.reshape(n * c, h * w).float() / tau, dim=1)
        t_log = F.log_softmax(t.reshape(n * c, h * w).float() / tau, dim=1)
        kl = (t_log.exp() * (t_log - s_log)).sum()
        total = total + kl * (tau ** 2) / (n * c)
    return total


def mimic_loss(student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Mean squared error per level, summed over levels."""
    total = student[0].new_zeros(())
    for level, (s, t) in enumerate(zip(student, teacher)):
        _check_pair(s, t, level)
        total = total + F.mse_loss(s.float(), t.float())
    return total


class FeatureDistillLoss(nn.Module):
    """Align module plus the feature loss (unweighted; the schedule weight is applied outside).

    student_channels / teacher_channels: channels of each neck level.  ``align[i]`` is a
    1x1 convolution (with bias) from the student's to the teacher's channels; it is trained
    with the student and is not part of the student model (dropped at export).
    """

    def __init__(self, student_channels: list[int], teacher_channels: list[int],
                 method: str = "cwd", temperature: float = 1.0, normalize: bool = True,
                 balance: bool = False):
        super().__init__()
        if method not in METHODS:
            raise ConfigError(f"unknown distillation method {method!r}; valid: {', '.join(METHODS)}")
        if len(student_channels) != len(teacher_channels):
            raise ConfigError(f"student has {len(student_channels)} feature levels, teacher "
                              f"{len(teacher_channels)}")
        if temperature <= 0:
            raise ConfigError(f"distill.temperature must be > 0, got {temperature}")
        self.method, self.temperature, self.normalize = method, float(temperature), normalize
        self.align = nn.ModuleList(nn.Conv2d(cs, ct, kernel_size=1)
                                   for cs, ct in zip(student_channels, teacher_channels))
        if balance:  # per level: running norms of the detection / distillation gradients
            self.register_buffer("grad_norms", torch.zeros(2, len(student_channels)))

    def forward(self, student: list[Tensor], teacher: list[Tensor],
                level_weights: Tensor | list[float] | None = None) -> Tensor:
        """student / teacher: neck outputs (N, C_s / C_t, H, W) per level -> scalar loss, the
        levels' losses summed (each times ``level_weights[i]`` when given)."""
        if len(student) != len(teacher):
            raise ValueError(f"student has {len(student)} feature levels, teacher {len(teacher)}")
        with torch.autocast(student[0].device.type, enabled=False):  # float32 throughout
            losses = self.level_losses(student, teacher)
        if level_weights is None:
            return torch.stack(losses).sum()
        return sum(w * x for w, x in zip(level_weights, losses))

    def level_losses(self, student: list[Tensor], teacher: list[Tensor]) -> list[Tensor]:
        """The loss of each level (float32)."""
        s_feats, t_feats = [], []
        for level, (align, s, t) in enumerate(zip(self.align, student, teacher)):
            if s.shape[0] != t.shape[0] or s.shape[-2:] != t.shape[-2:]:
                raise ValueError(
                    f"distillation level {level}: student feature map {tuple(s.shape)} and "
                    f"teacher feature map {tuple(t.shape)} differ in batch or size; teacher and "
                    f"student must have the same strides")
            s = align(s.float())
            t = t.float()
            if self.normalize:
                s, t = channel_normalize(s), channel_normalize(t)
            s_feats.append(s)
            t_feats.append(t)
        if self.method == "cwd":
            return [cwd_loss([s], [t], self.temperature) for s, t in zip(s_feats, t_feats)]
        return [mimic_loss([s], [t]) for s, t in zip(s_feats, t_feats)]
