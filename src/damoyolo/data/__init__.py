"""Data layer: readers (COCO / YOLO / VOC), validation, augmentation, loaders, synthetic data.

Coordinate convention everywhere: boxes are ``xyxy`` float pixels (continuous coordinates);
labels are contiguous ``0..C-1`` and ``DatasetIndex.category_ids`` maps them back to the
dataset's category ids (used when writing COCO results).
"""

from __future__ import annotations

from ..config import AugmentConfig
from .dataset import DetectionDataset
from .loader import EpochSampler, SeededLoader, build_loader, collate
from .readers import detect_format, load_coco, load_dataset, load_voc, load_yolo
from .records import DataReport, DatasetError, DatasetIndex, Record
from .results import detections_to_coco_results

__all__ = [
    "AugmentConfig", "augment_config_for", "load_dataset", "load_coco", "load_yolo", "load_voc",
    "detect_format", "Record", "DatasetIndex", "DataReport", "DatasetError", "DetectionDataset",
    "collate", "build_loader", "SeededLoader", "EpochSampler", "synthesize",
    "detections_to_coco_results",
]


def augment_config_for(preset: str, **overrides) -> AugmentConfig:
    """The release's augmentation recipe of a preset (``damoyolo-t``, ``ns``, ...) as an
    :class:`AugmentConfig`; keyword arguments override fields."""
    import dataclasses

    from ..presets import get_preset

    return dataclasses.replace(get_preset(preset).aug, **overrides)


def synthesize(*args, **kwargs):
    """See :func:`damoyolo.data.synthetic.synthesize`."""
    from .synthetic import synthesize as _s
    return _s(*args, **kwargs)
