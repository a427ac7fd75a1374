"""Plain sample records, the dataset index and the validation report.

Coordinate convention: boxes are ``xyxy`` float pixels of the ORIGINAL image, continuous
coordinates (a box covering pixel columns 0..9 is ``x1=0, x2=10``).  Labels are contiguous
``0..C-1``; ``DatasetIndex.category_ids[label]`` is the dataset's original category id.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from ..errors import DamoyoloError

__all__ = ["Record", "DatasetIndex", "DataReport", "DatasetError"]


class DatasetError(DamoyoloError, ValueError):
    """A dataset cannot be used as is; the message names the file and the record."""


@dataclass
class Record:
    """One image and its boxes.

    path: image file; boxes: float32 (N, 4) xyxy pixels of the original image;
    labels: int64 (N,) contiguous labels; image_id: the dataset's image id;
    height/width: original image size in pixels.
    """

    path: str
    boxes: np.ndarray
    labels: np.ndarray
    image_id: int
    height: int
    width: int

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.boxes) != len(self.labels):
            raise DatasetError(f"{self.path}: {len(self.boxes)} boxes but {len(self.labels)} labels")


# fault categories: (key, severity, description). Errors make `data check` exit non-zero and
# `load_dataset` refuse the dataset; warnings are fixed as described and counted.
FAULTS: dict[str, tuple[str, str]] = {
    "missing_image": ("error", "image file missing"),
    "corrupt_image": ("error", "image unreadable or corrupt (zero bytes, truncated, bad data)"),
    "unknown_category": ("error", "annotation refers to a category that is not declared"),
    "duplicate_image_id": ("error", "duplicate image id"),
    "duplicate_annotation_id": ("error", "duplicate annotation id"),
    "duplicate_category": ("error", "duplicate category id or name"),
    "unknown_image": ("error", "annotation refers to an image id that is not declared"),
    "malformed": ("error", "malformed annotation entry"),
    "converted_image": ("warning", "grayscale / RGBA / 16-bit image (converted to 8-bit RGB)"),
    "oversized_image": ("warning", "image over the pixel limit, not decoded (skipped; "
                                   "DAMOYOLO_MAX_IMAGE_PIXELS raises the limit)"),
    "size_mismatch": ("warning", "declared image size differs from the file (file size used)"),
    "box_clipped": ("warning", "box outside the image (clipped to the image)"),
    "box_degenerate": ("warning", "box with zero or negative area (dropped)"),
    "crowd_skipped": ("warning", "crowd annotation (iscrowd=1, not trained on, skipped)"),
    "difficult_skipped": ("warning", "VOC difficult object (skipped)"),
    "label_without_image": ("warning", "label file without an image (ignored)"),
    "negative_image": ("info", "image without boxes (kept as a negative sample)"),
}


@dataclass
class DataReport:
    """Counted faults with a few named examples each (file and record)."""

    source: str = ""
    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=lambda: defaultdict(list))
    max_examples: int = 5

    def add(self, kind: str, message: str, n: int = 1) -> None:
        if kind not in FAULTS:
            raise KeyError(f"unknown fault kind {kind!r}")
        self.counts[kind] += n
        if len(self.examples[kind]) < self.max_examples:
            self.examples[kind].append(message)

    def errors(self) -> dict[str, int]:
        return {k: v for k, v in self.counts.items() if v and FAULTS[k][0] == "error"}

    @property
    def ok(self) -> bool:
        return not self.errors()

    def lines(self, kinds: str = "all") -> list[str]:
        out = []
        order = sorted(self.counts, key=lambda k: (["error", "warning", "info"].index(FAULTS[k][0]), k))
        for k in order:
            sev, desc = FAULTS[k]
            if not self.counts[k] or (kinds != "all" and sev != kinds):
                continue
            out.append(f"  {sev.upper():7s} {k}: {self.counts[k]}  ({desc})")
            for ex in self.examples[k]:
                out.append(f"           - {ex}")
            more = self.counts[k] - len(self.examples[k])
            if more > 0:
                out.append(f"           ... and {more} more")
        return out

    def raise_if_errors(self) -> None:
        if not self.ok:
            raise DatasetError(f"{self.source}: dataset has errors (run `damoyolo data check "
                               f"{self.source}` for the full report):\n" + "\n".join(self.lines("error")))


@dataclass
class DatasetIndex:
    """A loaded dataset: records plus the explicit label <-> category id mapping."""

    records: list[Record]
    class_names: list[str]
    category_ids: list[int]
    source: str
    format: str = "coco"
    report: DataReport = field(default_factory=DataReport)

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.category_ids):
            raise DatasetError(f"{self.source}: {len(self.class_names)} class names but "
                               f"{len(self.category_ids)} category ids")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def label_to_category(self, labels: np.ndarray) -> np.ndarray:
        """Contiguous labels (N,) -> original category ids (N,)."""
        table = np.asarray(self.category_ids, dtype=np.int64)
        return table[np.asarray(labels, dtype=np.int64)]

    def instance_counts(self) -> list[int]:
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for r in self.records:
            np.add.at(counts, r.labels, 1)
        return counts.tolist()

    def to_coco_dict(self) -> dict:
        """COCO ground truth (images / annotations / categories) with the ORIGINAL category ids.

        Boxes are written as ``[x, y, w, h]`` floats; ``file_name`` is the image path.
        """
        images, anns = [], []
        aid = 1
        for r in self.records:
            images.append({"id": int(r.image_id), "file_name": r.path, "width": int(r.width),
                           "height": int(r.height)})
            cats = self.label_to_category(r.labels)
            for b, c in zip(r.boxes.tolist(), cats.tolist()):
                w, h = b[2] - b[0], b[3] - b[1]
                anns.append({"id": aid, "image_id": int(r.image_id), "category_id": int(c),
                             "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
                aid += 1
        cats = [{"id": int(i), "name": n} for i, n in zip(self.category_ids, self.class_names)]
        return {"images": images, "annotations": anns, "categories": cats}

    def summary(self) -> str:
        """One-screen summary: sizes, per-class instances and counted faults."""
        n_box = sum(len(r.labels) for r in self.records)
        lines = [f"dataset {self.source} ({self.format}): {len(self.records)} images, {n_box} boxes, "
                 f"{self.num_classes} classes"]
        counts = self.instance_counts()
        per = ", ".join(f"{n}[{cid}]={c}" for n, cid, c in
                        zip(self.class_names, self.category_ids, counts))
        lines.append(f"  instances per class (name[category id]=count): {per}")
        faults = self.report.lines()
        lines.extend(faults if faults else ["  no faults found"])
        return "\n".join(lines)
