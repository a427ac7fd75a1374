"""Detections -> COCO results with the dataset's ORIGINAL category ids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["detections_to_coco_results"]


def detections_to_coco_results(image_id: int, boxes, scores, labels, category_ids: Sequence[int],
                               rounded: bool = False) -> list[dict]:
    """One image's detections -> COCO result dicts.

    boxes: (N, 4) xyxy pixels of the original image; scores: (N,); labels: (N,) contiguous;
    category_ids: contiguous label -> dataset category id (``DatasetIndex.category_ids`` or the
    checkpoint's ``category_ids``).  Output boxes are ``[x, y, w, h]``; ``rounded``: to
    0.01 pixel and scores to 1e-5 (the results files of ``damoyolo val``).
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    s = np.asarray(scores, np.float64).reshape(-1)
    lab = np.asarray(labels, np.int64).reshape(-1)
    table = np.asarray(category_ids, np.int64)
    if len(lab) and (lab.min() < 0 or lab.max() >= len(table)):
        raise ValueError(f"image {image_id}: label {int(lab.max())} outside the {len(table)} "
                         f"categories of the mapping")
    cats = table[lab]
    def px(v: float) -> float:
        return round(v, 2) if rounded else v

    return [{"image_id": int(image_id), "category_id": int(c),
             "bbox": [px(x1), px(y1), px(x2 - x1), px(y2 - y1)],
             "score": round(sc, 5) if rounded else sc}
            for (x1, y1, x2, y2), sc, c in zip(b.tolist(), s.tolist(), cats.tolist())]
