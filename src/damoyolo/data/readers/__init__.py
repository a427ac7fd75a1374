"""Dataset readers: COCO json (primary), YOLO txt and Pascal VOC xml -> :class:`DatasetIndex`.

Every reader collects faults into a :class:`DataReport` instead of stopping at the first
one, so ``damoyolo data check`` can list them all; :func:`load_dataset` then refuses a
dataset with errors (``strict=True``) and keeps the counted warnings for the summary.

Category ids:
- COCO: the json's category ids; contiguous labels follow the ids in increasing order.
- YOLO: the class index of the label files (``0..C-1``), names from the names file / yaml.
- VOC: ``1..C``, classes in the order of a ``labels.txt``/``classes.txt`` in the dataset root
  if present, else sorted by name over all annotation files.
"""

from __future__ import annotations

from pathlib import Path

from ..records import DatasetError, DatasetIndex
from .coco import _find_coco_json, load_coco
from .voc import load_voc
from .yolo import _mini_yaml, load_yolo  # noqa: F401 - _mini_yaml kept importable from here

__all__ = ["load_dataset", "load_coco", "load_yolo", "load_voc", "detect_format"]


def detect_format(path: str | Path) -> str:
    """``"coco"``, ``"yolo"`` or ``"voc"`` for a path (json file or dataset folder)."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".json":
        return "coco"
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder")
    if p.is_dir():
        if (p / "Annotations").is_dir():
            return "voc"
        if (p / "labels").is_dir() or ((p / "images").is_dir() and not (p / "annotations").is_dir()):
            return "yolo"
        if (p / "annotations").is_dir() or list(p.glob("*.json")):
            return "coco"
    if p.is_file() and p.suffix.lower() in (".yaml", ".yml"):
        return "yolo"
    raise DatasetError(f"{p}: cannot tell the dataset format (expected a COCO .json, a folder "
                       f"with annotations/*.json, a YOLO folder with images/ + labels/, or a VOC "
                       f"folder with Annotations/ + JPEGImages/)")


def load_dataset(path: str | Path, split: str | None = None, *, strict: bool = True,
                 image_root: str | Path | None = None) -> DatasetIndex:
    """Load a dataset of any supported format (auto-detected).

    strict: raise :class:`DatasetError` listing the errors (unknown categories, duplicate ids,
    malformed entries, ...) when there are any; warnings (clipped/degenerate boxes, crowd,
    negatives) are fixed, counted and kept in ``index.report``.
    """
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "coco":
        jp = p if p.is_file() else _find_coco_json(p, split)
        index = load_coco(jp, split, image_root=image_root)
    elif fmt == "yolo":
        index = load_yolo(p, split)  # a folder, or a dataset yaml
    else:
        index = load_voc(p, split)
    if strict:
        index.report.raise_if_errors()
    return index
