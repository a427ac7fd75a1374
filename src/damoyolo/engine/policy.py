"""The trainer's hardware policy: the device kind, loader workers, precision and memory
format a run gets on this machine, and the lines that report them.

Each choice is a function of its setting (``None``: auto), the device and the model, so that
the training set-up (:mod:`damoyolo.workflows.train`) and the benchmarks
(``benchmarks/train_step.py``) make the same choice as the trainer.  What the CPU can do
and how many cores this process may use are machine facts from :mod:`damoyolo.runtime.cpu`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..ops.depthwise import fast_weight_grad_available
from ..runtime.cpu import torch_cpu_has, usable_cpus
from ..runtime.dist import wants_cuda

__all__ = ["STEM_STAGES", "device_kind", "default_workers", "has_depthwise", "autocast_dtype",
           "use_channels_last", "use_channels_last_stem", "to_memory_format", "describe"]

STEM_STAGES = 2  # the backbone's stem and first stage


def device_kind(setting: str = "") -> torch.device:
    """The kind of device ``train.device`` trains on (``cuda`` or ``cpu``), before the
    process picks its own GPU (:func:`damoyolo.runtime.dist.init_distributed`)."""
    return torch.device("cuda" if wants_cuda(setting) else "cpu")


def default_workers(workers: int | None, device: torch.device) -> int:
    """Loader workers: ``workers`` when given; else 4, or 0 when training on a CPU with at
    most 4 cores, where the compute already uses every core and a worker process only takes
    time from it (measured on 2 cores: 5 % slower epochs with one worker at 256 px, 1.8x
    slower on a 30-image dataset, where each epoch also pays the worker start-up)."""
    if workers is not None:
        return workers
    return 0 if device.type == "cpu" and usable_cpus() <= 4 else 4


def has_depthwise(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
               for m in model.modules())


def _cpu_has_bf16_dot() -> bool:
    """AMX tiles or AVX512-BF16 (``vdpbf16ps``): oneDNN's bfloat16 convolutions run natively."""
    return torch_cpu_has("amx_tile", "avx512_bf16")


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
            not has_depthwise(model) or fast_weight_grad_available()):
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
        return has_depthwise(model)
    return True


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
    return device.type == "cpu" and not has_depthwise(model)


def to_memory_format(model: nn.Module, channels_last: bool, stem: bool) -> nn.Module:
    """``model`` in the chosen memory format (in place): all channels_last, or NCHW with the
    backbone's first :data:`STEM_STAGES` stages in channels_last when ``stem``."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if stem:
        model.backbone.channels_last_stages = STEM_STAGES
    return model


def describe(amp_dtype: torch.dtype | None, device: torch.device, model: nn.Module,
             channels_last: bool, stem: bool) -> list[str]:
    """The lines that report the precision and memory format a run trains in."""
    prec = {None: "float32", torch.float16: "float16 autocast",
            torch.bfloat16: "bfloat16 autocast (CPU with AMX or AVX512-BF16)"}[amp_dtype]
    depthwise = has_depthwise(model)
    if amp_dtype == torch.bfloat16 and depthwise:
        prec += ", depthwise convolutions in float32"
    layout = ("channels_last" if channels_last else
              "contiguous (NCHW), the backbone's stem and first stage in channels_last"
              if stem else "contiguous (NCHW)")
    lines = [f"  precision {prec}, memory format {layout}"]
    if device.type == "cpu" and depthwise and not fast_weight_grad_available():
        lines.append("note: numba is not installed, so the depthwise convolutions' weight "
                     "gradients use torch's slower kernel (pip install 'damoyolo[train]')")
    return lines
