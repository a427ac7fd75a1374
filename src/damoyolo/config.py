"""Typed configuration: nested frozen dataclasses with strict dotted overrides.

Variants are made with :func:`dataclasses.replace` or :func:`apply_overrides`
(``["train.batch_size=64", "model.head.num_classes=3"]``).  Unknown keys are an
error with a close-match suggestion; values are parsed with
:func:`ast.literal_eval` (never ``eval``) and checked against the field type.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any
from .errors import DamoyoloError

__all__ = [
    "BackboneConfig",
    "NeckConfig",
    "HeadConfig",
    "ModelConfig",
    "ConfigError",
    "apply_overrides",
    "to_dict",
    "from_dict",
]


class ConfigError(DamoyoloError, ValueError):
    """Invalid configuration key or value."""


@dataclass(frozen=True)
class BackboneConfig:
    """TinyNAS backbone.

    kind: ``"res"`` (ResNet-like, k1kx), ``"csp"`` (CSP-like, kxkx) or ``"mob"`` (mobile, nano).
    structure: packaged structure name or path to a structure file (ours or official format).
    out_indices: indices of the stages whose outputs feed the neck (official numbering).
    """

    kind: str = "res"
    structure: str = "tinynas_L20_k1kx"
    out_indices: tuple[int, ...] = (2, 4, 5)
    with_spp: bool = True
    use_focus: bool = True
    act: str = "relu"
    reparam: bool = True


@dataclass(frozen=True)
class NeckConfig:
    """GiraffeNeckV2 (Efficient RepGFPN); input channels come from the backbone."""

    depth: float = 1.0
    hidden_ratio: float = 1.0
    out_channels: tuple[int, ...] = (64, 128, 256)
    act: str = "relu"
    depthwise: bool = False


@dataclass(frozen=True)
class HeadConfig:
    """ZeroHead (GFL outputs); input channels come from the neck."""

    num_classes: int = 80
    reg_max: int = 16
    kernel_size: int = 3
    strides: tuple[int, ...] = (8, 16, 32)
    conf_thresh: float = 0.05
    iou_thresh: float = 0.7
    max_det: int = 500


@dataclass(frozen=True)
class ModelConfig:
    name: str = "damoyolo-t"
    input_size: tuple[int, int] = (640, 640)  # (height, width)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    head: HeadConfig = field(default_factory=HeadConfig)


# ----------------------------------------------------------------------------- overrides

def _field_map(obj: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


def _resolved_type(owner: Any, name: str) -> Any:
    hints = typing.get_type_hints(type(owner))
    return hints[name]


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to type ``tp`` (a typing annotation)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {value!r} does not fit {tp}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a tuple, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a dict, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected True/False, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return from_dict(tp, value, prefix=key + ".")
        raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
    return value


_WORDS = {"true": True, "false": False, "none": None, "null": None}


def _parse_value(text: str) -> Any:
    if text.lower() in _WORDS:  # true / False / none / null, as YAML and JSON write them
        return _WORDS[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # bare strings: model.backbone.act=silu


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return f"{hint} Valid keys: {', '.join(sorted(options))}."


def _set(obj: Any, parts: list[str], value: Any, full: str) -> Any:
    fields = _field_map(obj)
    name = parts[0]
    if name not in fields:
        raise ConfigError(f"unknown config key {full!r}.{_suggest(name, list(fields))}")
    current = getattr(obj, name)
    if len(parts) == 1:
        new = _coerce(value, _resolved_type(obj, name), full)
    else:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"config key {full!r}: {name!r} has no sub-keys")
        new = _set(current, parts[1:], value, full)
    return dataclasses.replace(obj, **{name: new})


def apply_overrides(cfg: Any, overrides: list[str] | dict[str, Any]) -> Any:
    """Return a copy of ``cfg`` with dotted ``key=value`` overrides applied."""
    items: list[tuple[str, Any]]
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for ov in overrides:
            if "=" not in ov:
                raise ConfigError(f"override {ov!r} must look like key=value")
            k, v = ov.split("=", 1)
            items.append((k.strip(), _parse_value(v.strip())))
    for key, value in items:
        cfg = _set(cfg, key.split("."), value, key)
    return cfg


def to_dict(cfg: Any) -> dict:
    """Plain-data (JSON-compatible) form of a config dataclass."""
    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(cfg)


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build ``cls`` from plain data with strict keys (unknown keys are an error)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or cls.__name__}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(f"unknown config key {prefix + name!r}.{_suggest(name, list(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


# ============================================================================ training (engine)
# Appended section: hyper-parameters of the training loop.  Built from a preset's recipe by
# ``damoyolo.engine.train_config_for``; overridable with dotted keys (``train.epochs=10``).

@dataclass(frozen=True)
class TrainConfig:
    """Training loop hyper-parameters (a preset supplies the optimizer values of its release).

    recipe: ``"auto"`` sizes warm-up, the no-aug tail, the EMA and gradient accumulation
    for the run (the release's proportions, see :mod:`damoyolo.engine.schedule`);
    ``"release"`` uses the release's values as they are.  ``None`` / 0 below means "set by
    the recipe"; a value given here always wins.
    batch_size: images per iteration over all processes (split evenly across ranks).
    nominal_batch: accumulate gradients over ``ceil(nominal_batch / batch_size)`` iterations
    (0: none under ``auto``, 256 under ``release``).  The peak learning rate is ``lr`` when
    given, else ``base_lr_per_img * batch_size * accumulation``, except AdamW under ``auto``
    without accumulation: ``base_lr_per_img * 256``, the release's AdamW rate whatever the
    batch (Adam's step size does not grow with the batch as SGD's does).
    The schedule (quadratic warm-up, cosine to ``min_lr_ratio``, flat during the last
    ``no_aug_epochs``) is measured in iterations.
    channels_last: NHWC memory format for the model and batches.  ``None`` (auto): on CUDA
    always; on a CPU only for models with depthwise convolutions (the nano presets, whose
    steps it makes 1.5-1.9x faster).  The other presets train in NCHW on a CPU: in
    channels_last they learned measurably less per iteration than the official loop
    (docs/benchmarks/learning_parity.md), in NCHW as much.  See
    :func:`damoyolo.engine.policy.use_channels_last`.
    channels_last_stem: for a model training in NCHW, run the backbone's stem and first
    stage in channels_last (their convolutions are much faster in it on a CPU: the T step
    about 0.92x).  ``None`` (auto): on a CPU, for models without depthwise convolutions; see
    :func:`damoyolo.engine.policy.use_channels_last_stem`.
    keep_freed_memory: on a CPU with glibc, keep freed memory in the process for reuse instead
    of returning it to the system after every step (faster steps; the process holds its peak
    memory), see :mod:`damoyolo.engine.cpu_memory`.
    precise_bn: before each evaluation, the evaluated (EMA) model's BatchNorm statistics are
    recomputed over this many training images without augmentation (0: off), see
    :mod:`damoyolo.engine.bn`.
    assigner: the label assignment of the loss: ``"aligned_ota"`` (DAMO-YOLO's, the default),
    ``"simota"`` (YOLOX) or ``"tal"`` (TOOD / PP-YOLOE), see :mod:`damoyolo.assign`.
    cache_images: decode the training images once into RAM at the pipeline's resolution
    (the same samples, without the per-sample decode).  ``True``: always, memory-checked
    (fails when it would not fit), node-shared under torchrun; ``False``: never; ``None``
    (auto): a single process caches when the cache takes at most 2 GiB and a quarter of the
    available memory (:func:`damoyolo.data.cache.auto_cache_fits`).
    """

    recipe: str = "auto"
    epochs: int = 300
    batch_size: int = 16
    nominal_batch: int = 0
    base_lr_per_img: float = 0.01 / 64
    lr: float | None = None  # peak lr; None: from base_lr_per_img (see engine.schedule)
    min_lr_ratio: float = 0.05
    warmup_epochs: float | None = None
    warmup_start_lr: float = 0.0
    no_aug_epochs: int | None = None
    optimizer: str = "sgd"  # "sgd" (momentum, nesterov) or "adamw"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    ema: bool = True
    ema_momentum: float | None = None  # release: 0.9998
    ema_ramp: float | None = None  # momentum * (1 - exp(-updates / ema_ramp)); release: 2000
    amp: bool = True  # float16 on CUDA; bfloat16 on CPUs with AMX or AVX512-BF16; see autocast_dtype
    grad_clip: float = 0.0  # 0 = off
    assigner: str = "aligned_ota"  # label assignment: aligned_ota (DAMO-YOLO), simota, tal
    eval_interval: int = 10  # epochs; the last epoch is always evaluated
    seed: int = 1234
    workers: int | None = None  # None: 4 (0 when training on a CPU of <= 4 cores); capped
    # at the usable cores (see damoyolo.data.build_loader)
    device: str = ""  # "" = cuda when available (the local rank's GPU), else cpu
    sync_bn: bool = False
    ddp_timeout: float = 60.0  # minutes a rank waits in a collective (rank 0 evaluates alone)
    channels_last: bool | None = None  # None: auto (engine.policy.use_channels_last)
    channels_last_stem: bool | None = None  # None: auto (engine.policy.use_channels_last_stem)
    keep_freed_memory: bool = True  # CPU, glibc: reuse freed blocks (damoyolo.engine.cpu_memory)
    precise_bn: int | None = None  # images; None: 256 under auto, 0 (off) under release
    output: str = "runs/train"
    tensorboard: bool = True
    cache_images: bool | None = None  # decode every training image once into RAM (before
    # workers fork); None: auto, when small (damoyolo.data.cache.auto_cache_fits)


# ============================================================================= data augmentation
# (appended section: training-time augmentation; built per preset by
#  damoyolo.data.augment_config_for)

# The searched SADA policy of the official recipe (``autoaug_params``): 4 leading values
# unused by the box-level augmentation, then ``num_subpolicies`` x (colour op, prob*10,
# level, geometric op, prob*10, level), then the area and prob scale ratios.
SADA_POLICY_PARAMS: tuple[int, ...] = (
    6, 9, 5, 3, 3, 4, 2, 4, 4, 4, 5, 2, 4, 1, 4, 2, 6, 4, 2, 2, 2, 6, 2, 2, 2,
    0, 5, 1, 3, 0, 8, 5, 2, 8, 7, 5, 1, 3, 3, 3)


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation (official DAMO-YOLO recipe; see docs/data.md).

    mosaic_prob: probability of a 4-image mosaic; mosaic_scale: (min, max) scale of the random
    affine applied to the mosaic; mixup_prob / mixup_scale: probability and jitter range of
    mixup; degrees, translate (fraction of the input size), shear (degrees): random affine;
    flip_prob: horizontal flip; keep_ratio: resize keeping the aspect ratio (else stretch);
    sada: scale-aware box-level augmentation with ``sada_*`` parameters; pad_value: fill
    value of mosaic/affine/mixup canvases.
    """

    mosaic_prob: float = 1.0
    mosaic_scale: tuple[float, float] = (0.1, 2.0)
    mixup_prob: float = 0.15
    mixup_scale: tuple[float, float] = (0.5, 1.5)
    degrees: float = 10.0
    translate: float = 0.2
    shear: float = 2.0
    flip_prob: float = 0.5
    keep_ratio: bool = False
    sada: bool = True
    sada_box_prob: float = 0.3
    sada_num_subpolicies: int = 5
    sada_scale_splits: tuple[int, int, int] = (2048, 10240, 51200)
    sada_params: tuple[int, ...] = SADA_POLICY_PARAMS
    pad_value: int = 114


# ============================================================================ distillation
# Appended section: feature distillation from a frozen teacher (``damoyolo.distill``).
# Active when ``distill.teacher`` is set (``damoyolo train --teacher T.pth`` / ``damoyolo distill``).

@dataclass(frozen=True)
class DistillConfig:
    """Feature distillation on the three neck outputs (student <- frozen teacher).

    teacher: our checkpoint, an official release checkpoint, or a preset name (random
    weights, for testing only); "" = no distillation.
    teacher_model: preset naming the architecture of an official teacher checkpoint.
    method: ``"cwd"`` (channel-wise distillation: per channel, softmax over positions,
    KL teacher -> student) or ``"mimic"`` (MSE).  Both act on the student's features after
    the align module (1x1 conv to the teacher's channels) and, with ``normalize``, after the
    channel-wise dynamic temperature (per-channel mean subtracted, divided by the per-channel
    std over batch and positions).
    weight: loss weight at the start; it decays by cosine to ``weight * final_ratio`` over
    the strong-augmentation phase and is 0 in the last ``train.no_aug_epochs``.
    temperature: extra CWD temperature on the normalised features (the release uses 1).
    grad_clip: gradient-norm clipping used while distilling (the release clips at 30);
    0 keeps ``train.grad_clip``.
    balance: scale each level's distillation loss so that its gradient at that neck output
    has ``weight`` (cosine-decayed as above) times the norm of the detection loss's gradient
    there, both norms averaged over iterations (momentum ``balance_momentum``); ``weight`` is
    then a ratio of gradient norms, not of losses, and a level where detection learns
    nothing is not distilled.  False: ``weight`` multiplies the loss as in the release.
    levels: the neck levels distilled (0 = stride 8); ``None``: all, as in the release.
    """

    teacher: str = ""
    teacher_model: str = ""
    method: str = "cwd"
    weight: float = 0.5
    final_ratio: float = 0.1
    temperature: float = 1.0
    normalize: bool = True
    grad_clip: float = 30.0
    balance: bool = False
    balance_momentum: float = 0.9
    levels: tuple[int, ...] | None = None


# ============================================================================ experiment

@dataclass(frozen=True)
class ExperimentConfig:
    """What ``damoyolo train`` runs: the model, the training loop, the augmentation and
    distillation (dotted overrides ``model.head.num_classes=3``, ``train.epochs=10``,
    ``aug.mosaic_prob=0.5``, ``distill.weight=1.0``)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    aug: AugmentConfig = field(default_factory=AugmentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
