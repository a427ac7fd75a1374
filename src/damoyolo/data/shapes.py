"""The shapes of the synthetic data: six object classes drawn on textured, cluttered
backgrounds.  Shared by the synthetic detection images (:mod:`damoyolo.data.synthetic`) and
the synthetic tracking video (:mod:`damoyolo.track.video`); both are functions of the random
generator passed in, so the order of the draws is part of the output.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["CLASSES", "SHAPES", "unit_shape", "background", "object_patch"]

CLASSES = ("circle", "triangle", "square", "star", "cross", "ring")


def unit_shape(cls: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Outline (K, 2) in a unit frame (radius ~1), and an optional hole outline."""
    if cls in ("circle", "ring"):
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        outer = np.stack([np.cos(t), np.sin(t)], 1)
        return outer, (outer * 0.55 if cls == "ring" else None)
    if cls == "triangle":
        t = np.array([90, 210, 330]) * np.pi / 180
        return np.stack([np.cos(t), -np.sin(t)], 1), None
    if cls == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * 0.8, None
    if cls == "star":
        t = np.arange(10) * np.pi / 5 - np.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1), None
    # cross
    a, b = 1.0, 0.33
    return np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a],
                     [-b, b], [-a, b], [-a, -b], [-b, -b]], float), None


SHAPES = {c: unit_shape(c) for c in CLASSES}  # class name -> (outline, hole outline or None)


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An (h, w, 3) uint8 background: low-frequency colour, stripes or grain, pixel noise and
    4-15 unannotated distractors (strokes, arcs, soft blobs)."""
    cells = int(rng.integers(3, 12))
    low = rng.integers(0, 256, (cells, cells, 3)).astype(np.uint8)
    bg = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
    kind = rng.integers(3)
    if kind == 0:  # stripes
        period = rng.uniform(6, 40)
        ang = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        s = (np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * 2 * np.pi / period) * rng.uniform(10, 40))
        bg = np.clip(bg.astype(np.float32) + s[..., None], 0, 255).astype(np.uint8)
    elif kind == 1:  # fine grain texture
        grain = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3)).astype(np.uint8)
        grain = cv2.resize(grain, (w, h), interpolation=cv2.INTER_NEAREST)
        bg = cv2.addWeighted(bg, 0.75, grain, 0.25, 0)
    noise = rng.integers(-14, 15, (h, w, 1), dtype=np.int16)
    bg = np.clip(bg.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    # distractors: strokes, arcs, blobs (not of any class)
    for _ in range(int(rng.integers(4, 16))):
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        k = rng.integers(3)
        if k == 0:
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(bg, p1, p2, col, int(rng.integers(1, 6)), cv2.LINE_AA)
        elif k == 1:
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            ax = (int(rng.integers(8, 120)), int(rng.integers(8, 120)))
            a0 = float(rng.uniform(0, 360))
            cv2.ellipse(bg, c, ax, float(rng.uniform(0, 180)), a0, a0 + float(rng.uniform(40, 200)),
                        col, int(rng.integers(1, 5)), cv2.LINE_AA)
        else:  # soft blob, drawn on its own small patch
            rad, sig = int(rng.integers(10, 60)), float(rng.uniform(6, 20))
            half = rad + int(3 * sig) + 1
            cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
            yy, xx = np.ogrid[-half:half + 1, -half:half + 1]
            dist = np.sqrt((xx * xx + yy * yy).astype(np.float32))
            blob = np.clip((rad + sig - dist) / (2 * sig), 0, 1) * 255.0
            x0, y0, x1, y1 = max(cx - half, 0), max(cy - half, 0), min(cx + half + 1, w), min(cy + half + 1, h)
            a = (blob[y0 - cy + half:y1 - cy + half, x0 - cx + half:x1 - cx + half]
                 .astype(np.float32) / 255.0 * 0.6)[..., None]
            reg = bg[y0:y1, x0:x1]
            bg[y0:y1, x0:x1] = (reg * (1 - a) + np.array(col, np.float32) * a).astype(np.uint8)
    return bg


def object_patch(rng: np.random.Generator, cls: str, size: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(mask uint8 HxW, colour patch uint8 HxWx3) of one object, tight around the mask."""
    outer, hole = SHAPES[cls]
    aspect = math.exp(rng.uniform(math.log(0.6), math.log(1.6)))
    sx, sy = size / 2 * math.sqrt(aspect), size / 2 / math.sqrt(aspect)
    ang = rng.uniform(0, 2 * np.pi)
    R = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])

    def place(pts):
        return (pts * [sx, sy]) @ R.T

    o = place(outer)
    lo = np.floor(o.min(0)) - 1
    ph, pw = int(np.ceil(o.max(0)[1] - lo[1])) + 2, int(np.ceil(o.max(0)[0] - lo[0])) + 2
    mask = np.zeros((ph, pw), np.uint8)
    cv2.fillPoly(mask, [np.round((o - lo) * 4).astype(np.int32)], 255, cv2.LINE_8, shift=2)
    if hole is not None:
        cv2.fillPoly(mask, [np.round((place(hole) - lo) * 4).astype(np.int32)], 0, cv2.LINE_8, shift=2)
    base = rng.integers(0, 256, 3).astype(np.float32)
    gx, gy = rng.uniform(-1.2, 1.2, 2)
    yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
    shade = ((xx / max(pw, 1) - 0.5) * gx + (yy / max(ph, 1) - 0.5) * gy) * 60
    col = base[None, None, :] + shade[..., None] + rng.normal(0, 8, (ph, pw, 1)).astype(np.float32)
    return mask, np.clip(col, 0, 255).astype(np.uint8)
