"""Full dataset validation (decodes every image) and label-statistics plots (OpenCV)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .imageinfo import inspect_image
from .readers import load_dataset
from .records import DatasetIndex

__all__ = ["check_dataset", "label_stats_image"]


def check_dataset(path: str | Path, split: str | None = None, decode: bool = True
                  ) -> DatasetIndex:
    """Load without refusing errors, then (``decode``) open every image and add the image faults
    (missing / corrupt / converted / size mismatch) to ``index.report``."""
    index = load_dataset(path, split, strict=False)
    rep = index.report
    seen_ids: dict[int, str] = {}
    for r in index.records:
        if r.image_id in seen_ids and index.format == "coco":
            rep.add("duplicate_image_id", f"{r.path}: image id {r.image_id} also used by {seen_ids[r.image_id]}")
        seen_ids.setdefault(r.image_id, r.path)
        if not decode:
            if not Path(r.path).is_file():
                rep.add("missing_image", f"{r.path} (image id {r.image_id})")
            continue
        fault, detail, hw = inspect_image(r.path)
        if fault is not None:
            rep.add(fault, f"{r.path} (image id {r.image_id}): {detail}")
        if hw is not None and hw != (r.height, r.width):
            rep.add("size_mismatch", f"{r.path} (image id {r.image_id}): declared "
                                     f"{r.width}x{r.height}, file {hw[1]}x{hw[0]}")
    return index


def _bar_panel(values: list[float], labels: list[str], title: str, size=(420, 560)) -> np.ndarray:
    h, w = size
    img = np.full((h, w, 3), 255, np.uint8)
    cv2.putText(img, title, (10, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    n = max(len(values), 1)
    top, bottom, left, right = 40, h - 60, 50, w - 10
    vmax = max(max(values, default=0), 1)
    cv2.line(img, (left, bottom), (right, bottom), (0, 0, 0), 1)
    cv2.line(img, (left, top), (left, bottom), (0, 0, 0), 1)
    bw = (right - left) / n
    for i, (v, lab) in enumerate(zip(values, labels)):
        x0 = int(left + i * bw + bw * 0.1)
        x1 = int(left + (i + 1) * bw - bw * 0.1)
        y0 = int(bottom - (bottom - top) * v / vmax)
        cv2.rectangle(img, (x0, y0), (max(x1, x0 + 1), bottom), (200, 120, 40), -1)
        if n <= 40:
            txt = lab[:10]
            cv2.putText(img, txt, (x0, bottom + 14 + (i % 3) * 12), cv2.FONT_HERSHEY_SIMPLEX,
                        0.35, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"max {vmax:g}", (left + 4, top - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (80, 80, 80), 1, cv2.LINE_AA)
    return img


def _hist(values: np.ndarray, edges: np.ndarray) -> list[float]:
    return np.histogram(values, bins=edges)[0].astype(float).tolist() if len(values) else [0.0] * (len(edges) - 1)


def label_stats_image(index: DatasetIndex) -> np.ndarray:
    """A 2x2 panel (RGB uint8): instances per class, box size sqrt(area) in px, box aspect
    (w/h, log scale), and boxes per image."""
    boxes = np.concatenate([r.boxes for r in index.records]) if index.records else np.zeros((0, 4))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    size = np.sqrt(np.clip(w * h, 0, None))
    size_edges = np.array([0, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1e9])
    size_lbl = ["<8", "8", "16", "24", "32", "48", "64", "96", "128", "192", "256", "384", "512+"]
    asp = np.log2(np.clip(w, 1e-3, None) / np.clip(h, 1e-3, None))
    asp_edges = np.array([-1e9, -3, -2, -1.5, -1, -0.5, 0.5, 1, 1.5, 2, 3, 1e9])
    asp_lbl = ["<1/8", "1/8", "1/4", "1/3", "1/2", "~1", "2", "3", "4", "8", ">8"]
    per_img = np.array([len(r.labels) for r in index.records])
    pi_edges = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 1e9])
    pi_lbl = ["0", "1", "2-3", "4-7", "8-15", "16-31", "32-63", "64+", "128+"]
    p1 = _bar_panel(index.instance_counts(), index.class_names, "instances per class")
    p2 = _bar_panel(_hist(size, size_edges), size_lbl,
                    "box size sqrt(w*h) px (COCO small<32, medium<96)")
    p3 = _bar_panel(_hist(asp, asp_edges), asp_lbl, "box aspect w/h")
    p4 = _bar_panel(_hist(per_img, pi_edges), pi_lbl, "boxes per image")
    return np.vstack([np.hstack([p1, p2]), np.hstack([p3, p4])])
