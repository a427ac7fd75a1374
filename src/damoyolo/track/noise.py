"""Detections made from ground truth through a seeded noise model (benchmarks and tests).

:func:`noisy_detections` turns MOT ground-truth rows into per-frame detections without
identities, the way a detector of known quality would see the scene:

* **dropped**: each ground-truth box is missed independently with probability ``drop``;
* **jitter**: a kept box has its centre moved by ``N(0, jitter * w)`` in x and
  ``N(0, jitter * h)`` in y, and its width and height multiplied by
  ``exp(N(0, jitter))`` each;
* **false positives**: ``Poisson(fp * n)`` extra boxes in a frame with ``n`` ground-truth
  boxes, each with the size of a random ground-truth box of the sequence, placed uniformly
  at random inside the image (``image_wh``);
* **scores**: a true detection scores ``clip(N(score_mean, score_std), 0.01, 1)``, a false
  positive ``U(fp_score_low, fp_score_high)``, so some true boxes fall under a high-score
  threshold and some false ones above it;
* **identity removed**: the boxes of a frame come out in random order, with no id.

Everything is a function of the arguments and ``seed``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["noisy_detections"]


def noisy_detections(gt: np.ndarray, image_wh: tuple[int, int], seed: int = 0,
                     drop: float = 0.10, jitter: float = 0.05, fp: float = 0.05,
                     score_mean: float = 0.75, score_std: float = 0.15,
                     fp_score_low: float = 0.1, fp_score_high: float = 0.7,
                     frames: np.ndarray | None = None
                     ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """gt (N, >=6) MOT rows -> ``{frame: (boxes (K, 4) xyxy, scores (K,))}`` for every frame
    from 1 to the last gt frame (or ``frames``)."""
    rng = np.random.default_rng(seed)
    gt = np.asarray(gt, dtype=np.float64)
    W, H = image_wh
    sizes = gt[:, 4:6]
    frames = np.arange(1, int(gt[:, 0].max()) + 1) if frames is None else frames
    out = {}
    for f in np.asarray(frames, dtype=int).tolist():
        g = gt[gt[:, 0] == f]
        n = len(g)
        keep = rng.random(n) >= drop
        x, y, w, h = g[:, 2], g[:, 3], g[:, 4], g[:, 5]
        cx = x + w / 2 + rng.normal(0, jitter, n) * w
        cy = y + h / 2 + rng.normal(0, jitter, n) * h
        w2 = w * np.exp(rng.normal(0, jitter, n))
        h2 = h * np.exp(rng.normal(0, jitter, n))
        tp = np.stack([cx - w2 / 2, cy - h2 / 2, cx + w2 / 2, cy + h2 / 2], 1)[keep]
        tp_s = np.clip(rng.normal(score_mean, score_std, n), 0.01, 1.0)[keep]
        k = int(rng.poisson(fp * n)) if n else 0
        wh = sizes[rng.integers(0, len(sizes), k)] if k else np.zeros((0, 2))
        wh = np.minimum(wh, [W - 1, H - 1])
        x0 = rng.uniform(0, 1, k) * (W - wh[:, 0])
        y0 = rng.uniform(0, 1, k) * (H - wh[:, 1])
        fpb = np.stack([x0, y0, x0 + wh[:, 0], y0 + wh[:, 1]], 1)
        fp_s = rng.uniform(fp_score_low, fp_score_high, k)
        boxes = np.concatenate([tp, fpb])
        scores = np.concatenate([tp_s, fp_s])
        perm = rng.permutation(len(boxes))
        out[f] = (boxes[perm], scores[perm])
    return out
