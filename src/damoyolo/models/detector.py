"""The DAMO-YOLO detector: TinyNAS backbone -> GiraffeNeckV2 -> ZeroHead.

``forward`` returns the raw head outputs in train and eval mode alike; decoding,
post-processing, the assigner and the losses live outside the model.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from ..config import ConfigError, ModelConfig
from ..postprocess import Detections, postprocess
from .backbones.structure import inline_structure, is_packaged_structure, load_structure
from .backbones.tinynas import BACKBONES
from .heads.zero_head import HeadOutput, ZeroHead
from .necks.giraffe import GiraffeNeckV2
from .reparam import reparameterize

__all__ = ["DAMOYOLO"]


class DAMOYOLO(nn.Module):
    """DAMO-YOLO detector built from a :class:`~damoyolo.config.ModelConfig`.

    Contract: ``images`` float32 (B, 3, H, W), RGB in [0, 255] (no normalisation),
    H and W multiples of 32.  ``model(images)`` -> :class:`HeadOutput`;
    ``model.decode(outputs)`` -> scores (B, A, C) probabilities and boxes (B, A, 4) xyxy
    in input pixels, anchors ordered stride 8, 16, 32 and row-major per level.
    """

    def __init__(self, cfg: ModelConfig, class_names: list[str] | None = None):
        super().__init__()
        if class_names is not None and len(class_names) != cfg.head.num_classes:
            raise ConfigError(f"{len(class_names)} class names for {cfg.head.num_classes} classes")
        self.cfg = cfg
        self.class_names = list(class_names) if class_names is not None else None
        self.category_ids: list[int] | None = None  # label -> dataset category id, if known
        b = cfg.backbone
        if b.kind not in BACKBONES:
            raise ConfigError(f"unknown backbone kind {b.kind!r}; valid: {sorted(BACKBONES)}")
        structure = load_structure(b.structure)
        if not is_packaged_structure(b.structure):  # a searched structure: keep it, not its path
            b = dataclasses.replace(b, structure=inline_structure(structure))
            cfg = dataclasses.replace(cfg, backbone=b)
            self.cfg = cfg
        self.backbone = BACKBONES[b.kind](structure, out_indices=b.out_indices,
                                          with_spp=b.with_spp, use_focus=b.use_focus,
                                          act=b.act, reparam=b.reparam)
        n = cfg.neck
        self.neck = GiraffeNeckV2(self.backbone.out_channels, list(n.out_channels), depth=n.depth,
                                  hidden_ratio=n.hidden_ratio, act=n.act, depthwise=n.depthwise)
        h = cfg.head
        self.head = ZeroHead(self.neck.out_channels, num_classes=h.num_classes,
                             reg_max=h.reg_max, kernel_size=h.kernel_size, strides=h.strides)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.cfg.input_size)

    def features(self, images: Tensor) -> list[Tensor]:
        """Neck outputs (stride 8, 16, 32), e.g. for feature distillation."""
        return self.neck(self.backbone(images))

    def forward(self, images: Tensor) -> HeadOutput:
        return self.head(self.features(images))

    def decode(self, outputs: HeadOutput) -> tuple[Tensor, Tensor]:
        """Raw outputs -> (scores (B, A, C), boxes (B, A, 4) xyxy input pixels)."""
        return self.head.decode(outputs)

    def postprocess(self, outputs: HeadOutput, conf_thresh: float | None = None,
                    iou_thresh: float | None = None, max_det: int | None = None,
                    classes: list[int] | None = None) -> list[Detections]:
        """Decode + NMS with the preset's thresholds unless given; boxes in input pixels."""
        scores, boxes = self.decode(outputs)
        h = self.cfg.head
        return postprocess(scores, boxes,
                           h.conf_thresh if conf_thresh is None else conf_thresh,
                           h.iou_thresh if iou_thresh is None else iou_thresh,
                           h.max_det if max_det is None else max_det,
                           class_names=self.class_names, classes=classes)

    def reparameterize(self, fold_bn: bool = True) -> "DAMOYOLO":
        """Fuse RepConv branches (and conv+BN pairs) for deployment; returns self."""
        return reparameterize(self, fold_bn=fold_bn)

    def rename_classes(self, class_names: list[str],
                       category_ids: list[int] | None = None) -> None:
        """Give the same number of classes new names (the weights stay): the category ids
        of the old dataset no longer describe them, so they become ``category_ids`` (the new
        dataset's, label -> id) or unknown (``None``)."""
        if len(class_names) != self.num_classes:
            raise ConfigError(f"{len(class_names)} class names for {self.num_classes} classes; "
                              f"use reset_classes to change the number of classes")
        if category_ids is not None and len(category_ids) != self.num_classes:
            raise ConfigError(f"{len(category_ids)} category ids for {self.num_classes} classes")
        self.class_names = list(class_names)
        self.category_ids = None if category_ids is None else [int(c) for c in category_ids]

    def reset_classes(self, class_names: list[str]) -> None:
        """Switch to a new label set: re-initialise only the class projections."""
        self.head.reset_classes(len(class_names))
        self.class_names = list(class_names)
        self.category_ids = None  # the old dataset's ids do not describe the new classes
        self.cfg = dataclasses.replace(
            self.cfg, head=dataclasses.replace(self.cfg.head, num_classes=len(class_names)))
