"""MOT metrics (MOTA, IDF1, ID switches, ...) with the optional package ``motmetrics``.

Boxes are compared by IoU; a ground-truth box and a tracked box can match when their IoU is
at least ``iou`` (default 0.5, the MOTChallenge rule).  Ground-truth rows whose visibility
column (9th, MOT16+ files) is below ``min_visibility`` are *ignored*: they count neither as
misses nor -- together with any tracked box that overlaps one by IoU >= ``iou`` -- as false
positives (the MOTChallenge treatment of heavily occluded people).
"""

from __future__ import annotations

import numpy as np

from .._optional import import_optional
from .matching import box_iou, linear_assignment

__all__ = ["evaluate_mot", "METRICS"]

METRICS = ["mota", "idf1", "num_switches", "num_false_positives", "num_misses",
           "num_objects", "num_unique_objects", "mostly_tracked", "motp", "precision",
           "recall"]


def _xyxy(rows: np.ndarray) -> np.ndarray:
    return np.stack([rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]],
                    1)


def evaluate_mot(gt: np.ndarray, pred: np.ndarray, iou: float = 0.5,
                 min_visibility: float | None = None, name: str = "seq") -> dict:
    """gt, pred: (N, >=6) MOT rows ``frame,id,x,y,w,h,...`` -> metrics dict (:data:`METRICS`).

    ``min_visibility``: ignore gt rows with column 9 (visibility) below it (see module doc).
    """
    mm = import_optional("motmetrics", "MOT evaluation")
    acc = mm.MOTAccumulator(auto_id=False)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, gt.shape[-1] if len(gt) else 10)
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, pred.shape[-1] if len(pred) else 10)
    frames = np.union1d(gt[:, 0], pred[:, 0]).astype(int) if len(gt) + len(pred) else []
    for f in frames:
        g = gt[gt[:, 0] == f]
        p = pred[pred[:, 0] == f]
        if min_visibility is not None and len(g) and g.shape[1] > 8:
            hidden = g[:, 8] < min_visibility
            if hidden.any() and len(p):
                # a tracked box matched to an ignored gt box is removed, not counted
                ov = box_iou(_xyxy(g[hidden]), _xyxy(p))
                m, _, _ = linear_assignment(1.0 - ov, 1.0 - iou)
                # only drop boxes that do not match a visible gt box better
                vis_iou = box_iou(_xyxy(g[~hidden]), _xyxy(p)).max(0) if (~hidden).any() \
                    else np.zeros(len(p))
                drop = [j for i, j in m.tolist() if ov[i, j] > vis_iou[j]]
                p = np.delete(p, drop, axis=0)
            g = g[~hidden]
        dist = 1.0 - box_iou(_xyxy(g), _xyxy(p))
        dist = np.where(dist > 1.0 - iou, np.nan, dist)
        acc.update(g[:, 1].astype(int).tolist(), p[:, 1].astype(int).tolist(), dist, frameid=int(f))
    mh = mm.metrics.create()
    summary = mh.compute(acc, metrics=METRICS, name=name)
    return {k: float(summary[k].iloc[0]) for k in METRICS}
