"""Image-level training transforms of the DAMO-YOLO recipe (NumPy/OpenCV, per-sample RNG).

All functions take an HxWx3 uint8 RGB image and boxes as float (N, 4) ``xyxy`` in continuous
pixel coordinates of that image (pixel ``i`` covers ``[i, i+1)``), plus int64 labels (N,),
and return the transformed triple.  Randomness comes only from the ``rng`` argument
(:class:`numpy.random.Generator`), so a sample is a pure function of its seed.

Box arithmetic is exact for the pixel operations used: ``cv2.resize`` maps continuous
coordinates by the size ratio, and the affine warp (which maps pixel centres) is applied to
boxes in continuous coordinates with the half-pixel correction.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["resize_image", "letterbox_to_input", "hflip", "mosaic", "random_affine", "mixup",
           "filter_small"]


def resize_image(img: np.ndarray, boxes: np.ndarray, input_hw: tuple[int, int], keep_ratio: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Resize to the input size: stretch, or keep the aspect ratio (fit inside, no padding)."""
    h0, w0 = img.shape[:2]
    ih, iw = input_hw
    if keep_ratio:
        r = min(ih / h0, iw / w0)
        nw, nh = max(1, int(w0 * r)), max(1, int(h0 * r))
    else:
        nw, nh = iw, ih
    if (nh, nw) != (h0, w0):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    boxes = boxes * np.array([nw / w0, nh / h0, nw / w0, nh / h0], dtype=np.float32)
    return img, boxes.astype(np.float32)


def letterbox_to_input(img: np.ndarray, input_hw: tuple[int, int], value: int = 0) -> np.ndarray:
    """Pad (bottom/right) an image that fits inside ``input_hw`` to exactly that size."""
    h, w = img.shape[:2]
    ih, iw = input_hw
    if (h, w) == (ih, iw):
        return img
    out = np.full((ih, iw, img.shape[2]), value, dtype=img.dtype)
    out[:h, :w] = img
    return out


def hflip(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip of image and boxes."""
    w = img.shape[1]
    img = np.ascontiguousarray(img[:, ::-1])
    if len(boxes):
        boxes = boxes.copy()
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    return img, boxes


def mosaic(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], input_hw: tuple[int, int],
           keep_ratio: bool, rng: np.random.Generator, pad_value: int = 114
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four images around a random centre of a (2H, 2W) canvas filled with ``pad_value``.

    Each image is first resized to the input size (keep-ratio or stretch); image 0 goes top-left
    of the centre, 1 top-right, 2 bottom-left, 3 bottom-right; boxes are clipped to the canvas.
    """
    ih, iw = input_hw
    yc = int(rng.uniform(0.5 * ih, 1.5 * ih))
    xc = int(rng.uniform(0.5 * iw, 1.5 * iw))
    canvas = np.full((2 * ih, 2 * iw, 3), pad_value, dtype=np.uint8)
    all_boxes, all_labels = [], []
    for k, (img, boxes, labels) in enumerate(samples):
        img, boxes = resize_image(img, boxes, input_hw, keep_ratio)
        h, w = img.shape[:2]
        if k == 0:
            x1, y1, x2, y2 = max(xc - w, 0), max(yc - h, 0), xc, yc
            sx1, sy1 = w - (x2 - x1), h - (y2 - y1)
        elif k == 1:
            x1, y1, x2, y2 = xc, max(yc - h, 0), min(xc + w, 2 * iw), yc
            sx1, sy1 = 0, h - (y2 - y1)
        elif k == 2:
            x1, y1, x2, y2 = max(xc - w, 0), yc, xc, min(2 * ih, yc + h)
            sx1, sy1 = w - (x2 - x1), 0
        else:
            x1, y1, x2, y2 = xc, yc, min(xc + w, 2 * iw), min(2 * ih, yc + h)
            sx1, sy1 = 0, 0
        canvas[y1:y2, x1:x2] = img[sy1:sy1 + (y2 - y1), sx1:sx1 + (x2 - x1)]
        if len(boxes):
            b = boxes + np.array([x1 - sx1, y1 - sy1] * 2, dtype=np.float32)
            all_boxes.append(b)
            all_labels.append(labels)
    if all_boxes:
        boxes = np.concatenate(all_boxes)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, 2 * iw)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, 2 * ih)
        labels = np.concatenate(all_labels)
    else:
        boxes, labels = np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
    return canvas, boxes, labels


def affine_matrix(in_hw: tuple[int, int], out_hw: tuple[int, int], degrees: float,
                  scale_range: tuple[float, float], shear: float, translate: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """3x3 matrix: centre the input, rotate+scale, shear, move to a jittered output centre."""
    C = np.eye(3)
    C[0, 2], C[1, 2] = -in_hw[1] / 2, -in_hw[0] / 2
    R = np.eye(3)
    angle = rng.uniform(-degrees, degrees)
    s = rng.uniform(scale_range[0], scale_range[1])
    R[:2] = cv2.getRotationMatrix2D(angle=angle, center=(0, 0), scale=s)
    S = np.eye(3)
    S[0, 1] = math.tan(rng.uniform(-shear, shear) * math.pi / 180)
    S[1, 0] = math.tan(rng.uniform(-shear, shear) * math.pi / 180)
    T = np.eye(3)
    T[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_hw[1]
    T[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_hw[0]
    return T @ S @ R @ C, s


def transform_boxes(boxes: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Boxes (N,4) through a pixel-centre affine ``M`` (3x3): enclosing box of the 4 corners."""
    n = len(boxes)
    if n == 0:
        return boxes.reshape(0, 4)
    # continuous coords = pixel-centre coords + 0.5
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]]) @ M @ np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    pts = np.ones((n * 4, 3))
    pts[:, :2] = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)
    xy = (pts @ half.T)[:, :2].reshape(n, 8)
    x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
    return np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], 1)


def _box_candidates(before: np.ndarray, after: np.ndarray, wh_thr: float = 2, ar_thr: float = 20,
                    area_thr: float = 0.1, eps: float = 1e-16) -> np.ndarray:
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def random_affine(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, out_hw: tuple[int, int],
                  degrees: float, translate: float, scale_range: tuple[float, float], shear: float,
                  rng: np.random.Generator, pad_value: int = 114
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random rotation/scale/shear/translation to ``out_hw`` (the mosaic -> input-size step).

    Boxes become the enclosing box of their transformed corners, clipped to the output; boxes
    narrower/shorter than 2 px, with aspect > 20 or keeping < 10% of their (scaled) area are
    dropped.
    """
    M, s = affine_matrix(img.shape[:2], out_hw, degrees, scale_range, shear, translate, rng)
    oh, ow = out_hw
    img = cv2.warpAffine(img, M[:2], dsize=(ow, oh), flags=cv2.INTER_LINEAR,
                         borderValue=(pad_value, pad_value, pad_value))
    if len(boxes) == 0:
        return img, boxes.reshape(0, 4).astype(np.float32), labels
    new = transform_boxes(boxes.astype(np.float64), M)
    new[:, [0, 2]] = new[:, [0, 2]].clip(0, ow)
    new[:, [1, 3]] = new[:, [1, 3]].clip(0, oh)
    keep = _box_candidates(boxes * s, new)
    return img, new[keep].astype(np.float32), labels[keep]


def mixup(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, other: np.ndarray,
          other_boxes: np.ndarray, other_labels: np.ndarray, input_hw: tuple[int, int],
          mixup_scale: tuple[float, float], rng: np.random.Generator, pad_value: int = 114
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blend (0.5/0.5) with another image: keep-ratio resize, scale jitter, random flip, random crop."""
    ih, iw = input_hw
    jit = rng.uniform(mixup_scale[0], mixup_scale[1])
    flip = rng.uniform(0, 1) > 0.5
    canvas = np.full((ih, iw, 3), pad_value, dtype=np.uint8)
    r = min(ih / other.shape[0], iw / other.shape[1])
    nw, nh = max(1, int(other.shape[1] * r)), max(1, int(other.shape[0] * r))
    canvas[:nh, :nw] = cv2.resize(other, (nw, nh), interpolation=cv2.INTER_LINEAR)
    jw, jh = max(1, int(iw * jit)), max(1, int(ih * jit))
    canvas = cv2.resize(canvas, (jw, jh), interpolation=cv2.INTER_LINEAR)
    sx, sy = (nw / other.shape[1]) * (jw / iw), (nh / other.shape[0]) * (jh / ih)
    ob = other_boxes.astype(np.float64) * np.array([sx, sy, sx, sy])
    ob[:, [0, 2]] = ob[:, [0, 2]].clip(0, jw)
    ob[:, [1, 3]] = ob[:, [1, 3]].clip(0, jh)
    if flip:
        canvas = canvas[:, ::-1]
        ob[:, [0, 2]] = jw - ob[:, [2, 0]]
    th, tw = img.shape[:2]
    padded = np.zeros((max(jh, th), max(jw, tw), 3), dtype=np.uint8)
    padded[:jh, :jw] = canvas
    y_off = int(rng.integers(0, padded.shape[0] - th)) if padded.shape[0] > th + 1 else 0
    x_off = int(rng.integers(0, padded.shape[1] - tw)) if padded.shape[1] > tw + 1 else 0
    crop = padded[y_off:y_off + th, x_off:x_off + tw]
    ob[:, [0, 2]] = (ob[:, [0, 2]] - x_off).clip(0, tw)
    ob[:, [1, 3]] = (ob[:, [1, 3]] - y_off).clip(0, th)
    out = cv2.addWeighted(img, 0.5, crop, 0.5, 0.0, dtype=cv2.CV_32F).astype(np.uint8)
    return (out, np.concatenate([boxes, ob.astype(np.float32)]),
            np.concatenate([labels, other_labels]).astype(np.int64))


def filter_small(boxes: np.ndarray, labels: np.ndarray, min_area: float = 4.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Drop boxes with area <= ``min_area`` pixels (the recipe's final filter)."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4), labels
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = area > min_area
    return boxes[keep], labels[keep]
