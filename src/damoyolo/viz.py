"""Drawing detections on images (OpenCV)."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from .postprocess import Detections

__all__ = ["color_for", "draw_detections"]


def color_for(label: int) -> tuple[int, int, int]:
    """A stable, distinct RGB colour per class index."""
    h = (label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.75, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(img_rgb: np.ndarray, det: Detections, score_fmt: str = "{:.2f}",
                    thickness: int | None = None) -> np.ndarray:
    """Return a copy of ``img_rgb`` (HxWx3 uint8 RGB) with boxes and labels drawn.

    Drawn from the lowest score to the highest, so that where boxes and labels overlap (e.g.
    two classes on the same box) the best-scored one is drawn last and stays readable.
    """
    out = np.ascontiguousarray(img_rgb.copy())
    h, w = out.shape[:2]
    t = thickness or max(1, round(min(h, w) / 320))
    fs = max(0.35, min(h, w) / 1200)
    rows = sorted(zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist(), det.names),
                  key=lambda r: r[1])
    for box, score, label, name in rows:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        c = color_for(int(label))
        cv2.rectangle(out, (x1, y1), (x2, y2), c, t)
        text = f"{name} {score_fmt.format(score)}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
        ty = max(y1, th + base + 2)
        cv2.rectangle(out, (x1, ty - th - base - 2), (x1 + tw + 2, ty), c, -1)
        cv2.putText(out, text, (x1 + 1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out
