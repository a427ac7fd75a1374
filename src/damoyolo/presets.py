"""The eight published DAMO-YOLO models as configuration values.

Architecture hyper-parameters and recipe values are those of the official
configs (``configs/damoyolo_tinynas*.py`` of the DAMO-YOLO release); the
published figures are those of the official model zoo table.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from types import MappingProxyType

from .config import (AugmentConfig, BackboneConfig, HeadConfig, ModelConfig, NeckConfig,
                     TrainConfig)
from .errors import DamoyoloError

__all__ = ["Preset", "PRESETS", "PresetError", "get_preset", "preset_names"]


class PresetError(DamoyoloError, KeyError):
    """An unknown model name; the message lists the valid ones."""


@dataclass(frozen=True)
class Preset:
    """A published model: its architecture, its release's training and augmentation values,
    and the published figures.  ``train`` holds the optimizer values of the release (the
    schedule's length-dependent values are set by ``train.recipe``, see
    :mod:`damoyolo.engine.schedule`)."""

    model: ModelConfig
    official_config: str  # official config / checkpoint stem
    published_params_m: float | None
    published_gflops: float
    published_map: float | None  # COCO val mAP@[.5:.95], None where not published
    train: TrainConfig = field(default_factory=TrainConfig)
    aug: AugmentConfig = field(default_factory=AugmentConfig)


# the release's optimizers: SGD (lr 0.01 per 64 images, nesterov) for T-L; AdamW
# (lr 0.001 per 64 images, weight decay 0.01) for the nano models
_SGD = TrainConfig(optimizer="sgd", base_lr_per_img=0.01 / 64, weight_decay=5e-4, momentum=0.9,
                   min_lr_ratio=0.05)
_ADAMW = TrainConfig(optimizer="adamw", base_lr_per_img=0.001 / 64, weight_decay=1e-2,
                     min_lr_ratio=0.05)


def _nano(*, name, structure, focus, neck_out, head_kernel, official, params, gflops, mAP,
          mosaic_scale=(0.1, 2.0)):
    return Preset(
        model=ModelConfig(
            name=name,
            input_size=(416, 416),
            backbone=BackboneConfig(kind="mob", structure=structure, out_indices=(2, 4, 5),
                                    with_spp=True, use_focus=focus, act="silu", reparam=False),
            neck=NeckConfig(depth=0.5, hidden_ratio=0.5, out_channels=neck_out, act="silu",
                            depthwise=True),
            head=HeadConfig(reg_max=7, kernel_size=head_kernel, conf_thresh=0.03,
                            iou_thresh=0.65),
        ),
        official_config=official,
        published_params_m=params,
        published_gflops=gflops,
        published_map=mAP,
        train=_ADAMW,
        aug=AugmentConfig(mosaic_scale=mosaic_scale, shear=0.2),
    )


def _std(*, name, kind, structure, out_idx, act, neck_depth, neck_hidden, neck_out, official,
         params, gflops, mAP, shear):
    return Preset(
        model=ModelConfig(
            name=name,
            input_size=(640, 640),
            backbone=BackboneConfig(kind=kind, structure=structure, out_indices=out_idx,
                                    with_spp=True, use_focus=True, act=act, reparam=True),
            neck=NeckConfig(depth=neck_depth, hidden_ratio=neck_hidden, out_channels=neck_out,
                            act=act, depthwise=False),
            head=HeadConfig(reg_max=16, kernel_size=3, conf_thresh=0.05, iou_thresh=0.7),
        ),
        official_config=official,
        published_params_m=params,
        published_gflops=gflops,
        published_map=mAP,
        train=_SGD,
        aug=AugmentConfig(shear=shear),
    )


# nano models (416): mobile backbone, depthwise neck, AdamW; keyword-only, one field a name
_ALL = [
    _nano(name="damoyolo-ns", structure="tinynas_nano_small", focus=False,
          neck_out=(40, 80, 160), head_kernel=1, official="damoyolo_tinynasL18_Ns",
          params=1.41, gflops=1.56, mAP=32.3, mosaic_scale=(0.75, 1.25)),
    _nano(name="damoyolo-nm", structure="tinynas_nano_middle", focus=False,
          neck_out=(64, 128, 256), head_kernel=1, official="damoyolo_tinynasL18_Nm",
          params=2.71, gflops=3.69, mAP=38.2),
    _nano(name="damoyolo-nl", structure="tinynas_nano_large", focus=False,
          neck_out=(80, 160, 320), head_kernel=1, official="damoyolo_tinynasL20_Nl",
          params=5.69, gflops=6.04, mAP=40.5),
    _nano(name="damoyolo-n", structure="tinynas_L20_k1kx_nano", focus=True,
          neck_out=(64, 128, 256), head_kernel=3, official="damoyolo_tinynasL20_N",
          params=None, gflops=3.02, mAP=None),
    # standard models (640): ResNet-like (T, S) or CSP-like (M, L) backbone, SGD
    _std(name="damoyolo-t", kind="res", structure="tinynas_L20_k1kx", out_idx=(2, 4, 5),
         act="relu", neck_depth=1.0, neck_hidden=1.0, neck_out=(64, 128, 256),
         official="damoyolo_tinynasL20_T", params=8.5, gflops=18.1, mAP=42.0, shear=0.2),
    _std(name="damoyolo-s", kind="res", structure="tinynas_L25_k1kx", out_idx=(2, 4, 5),
         act="relu", neck_depth=1.0, neck_hidden=0.75, neck_out=(128, 256, 512),
         official="damoyolo_tinynasL25_S", params=16.3, gflops=37.8, mAP=46.0, shear=2.0),
    _std(name="damoyolo-m", kind="csp", structure="tinynas_L35_kxkx", out_idx=(2, 3, 4),
         act="silu", neck_depth=1.5, neck_hidden=1.0, neck_out=(128, 256, 512),
         official="damoyolo_tinynasL35_M", params=28.2, gflops=61.8, mAP=49.2, shear=2.0),
    _std(name="damoyolo-l", kind="csp", structure="tinynas_L45_kxkx", out_idx=(2, 3, 4),
         act="silu", neck_depth=2.0, neck_hidden=1.0, neck_out=(128, 256, 512),
         official="damoyolo_tinynasL45_L", params=42.1, gflops=97.3, mAP=50.8, shear=2.0),
]

PRESETS: MappingProxyType = MappingProxyType({p.model.name: p for p in _ALL})


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    """Look a preset up by name (``damoyolo-t``; ``t``, ``T`` and the official config stem work too)."""
    key = name.strip()
    if key in PRESETS:
        return PRESETS[key]
    low = key.lower()
    for cand in (low, f"damoyolo-{low}"):
        if cand in PRESETS:
            return PRESETS[cand]
    for p in PRESETS.values():
        if p.official_config.lower() == low:
            return p
    close = difflib.get_close_matches(low, list(PRESETS), n=2)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise PresetError(f"unknown model {name!r}.{hint} Valid: {', '.join(PRESETS)}")
