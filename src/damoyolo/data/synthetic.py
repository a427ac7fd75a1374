"""Synthetic COCO-format detection dataset (the embedded default for demos and tests).

Six shape classes drawn with random scale (down to ~8 px, COCO "small"), aspect ratio,
rotation, colour and texture over cluttered textured backgrounds with distractor strokes and
arcs; objects may occlude each other (each keeps at least 40% of its pixels visible) and may
be cut by the image border.  Boxes are the exact pixel extent of each object's (amodal,
in-image) mask.  Everything is a function of the seed; images are drawn in parallel.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

__all__ = ["CLASSES", "synthesize", "draw_image"]

CLASSES = ("circle", "triangle", "square", "star", "cross", "ring")
_SIZES = ((640, 640), (480, 640), (640, 480))  # (h, w) at size=640


def _unit_shape(cls: str) -> tuple[np.ndarray, np.ndarray | None]:
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


_SHAPES = {c: _unit_shape(c) for c in CLASSES}


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
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


def _object_patch(rng: np.random.Generator, cls: str, size: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(mask uint8 HxW, colour patch uint8 HxWx3) of one object, tight around the mask."""
    outer, hole = _SHAPES[cls]
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


def draw_image(seed: tuple[int, ...], hw: tuple[int, int], max_objects: int = 12
               ) -> tuple[np.ndarray, list[tuple[list[float], int]]]:
    """One synthetic RGB image and its ``[(xyxy box, class index), ...]``."""
    rng = np.random.default_rng(seed)
    h, w = hw
    img = _background(rng, h, w)
    owner = np.full((h, w), -1, np.int16)
    areas: list[int] = []
    objs: list[tuple[int, tuple[int, int, int, int]]] = []
    n = int(rng.integers(1, max_objects + 1))
    smin, smax = 8.0 * min(h, w) / 640, 0.45 * min(h, w)
    for _ in range(n):
        for _attempt in range(4):
            cls_i = int(rng.integers(len(CLASSES)))
            size = math.exp(rng.uniform(math.log(smin), math.log(smax)))
            mask, col = _object_patch(rng, CLASSES[cls_i], size)
            ph, pw = mask.shape
            x0 = int(rng.integers(-pw // 4, w - 3 * pw // 4 + 1))
            y0 = int(rng.integers(-ph // 4, h - 3 * ph // 4 + 1))
            ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + pw, w), min(y0 + ph, h)
            if ix1 <= ix0 or iy1 <= iy0:
                continue
            m = mask[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] > 0
            if m.sum() < 12:
                continue
            covered = owner[iy0:iy1, ix0:ix1][m]
            covered = covered[covered >= 0]
            if len(covered):
                lost = np.bincount(covered, minlength=len(objs))
                visible = np.bincount(owner[owner >= 0].ravel(), minlength=len(objs)) if lost.any() else None
                if visible is not None and ((visible - lost)[lost > 0] < 0.4 * np.asarray(areas)[lost > 0]).any():
                    continue
            k = len(objs)
            reg = img[iy0:iy1, ix0:ix1]
            reg[m] = col[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0][m]
            owner[iy0:iy1, ix0:ix1][m] = k
            ys, xs = np.nonzero(m)
            areas.append(int(m.sum()))
            objs.append((cls_i, (ix0 + int(xs.min()), iy0 + int(ys.min()),
                                 ix0 + int(xs.max()) + 1, iy0 + int(ys.max()) + 1)))
            break
    # light global blur/noise so edges are not perfectly crisp
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    return img, [([float(v) for v in box], c) for c, box in objs]


def _work(job: tuple[int, int, str, int, int, int]) -> tuple[int, str, int, int, list]:
    seed, i, out, h, w, quality = job
    img, anns = draw_image((seed, i), (h, w))
    cv2.imwrite(out, img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return i, out, h, w, anns


def synthesize(out_dir: str | Path, images: int = 200, seed: int = 0, size: int = 640,
               val_fraction: float = 0.2, workers: int | None = None, quality: int = 90) -> dict:
    """Write ``out_dir/{train,val}/*.jpg`` and ``out_dir/annotations/{train,val}.json``.

    images: total count (val gets ``round(images * val_fraction)``, at least 1 when images >= 2);
    size: long image side (images are size x size, or 3:4 / 4:3).  Category ids are 1..6.
    Returns ``{"train": n_train, "val": n_val, "boxes": n_boxes}``.
    """
    if images < 1:
        raise ValueError(f"images must be >= 1, got {images}")
    out = Path(out_dir)
    n_val = max(1, round(images * val_fraction)) if images >= 2 else 0
    n_train = images - n_val
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng((seed, 7919))
    jobs: dict[str, list] = {"train": [], "val": []}
    for i in range(images):
        split = "train" if i < n_train else "val"
        (out / split).mkdir(exist_ok=True)
        sh, sw = _SIZES[int(rng.integers(len(_SIZES)))]
        h, w = int(round(sh * size / 640)), int(round(sw * size / 640))
        jobs[split].append((seed, i, str(out / split / f"{i:06d}.jpg"), h, w, quality))
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    all_jobs = jobs["train"] + jobs["val"]
    if workers > 1 and images > 8:
        with ProcessPoolExecutor(workers) as ex:
            results = list(ex.map(_work, all_jobs, chunksize=max(1, images // (workers * 8))))
    else:
        results = [_work(j) for j in all_jobs]
    by_i = {r[0]: r for r in results}
    cats = [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(CLASSES)]
    n_boxes = 0
    for split, js in jobs.items():
        imgs, anns = [], []
        for j in js:
            i, path, h, w, objs = by_i[j[1]]
            img_id = len(imgs) + 1
            imgs.append({"id": img_id, "file_name": Path(path).name, "height": h, "width": w})
            for box, c in objs:
                bw, bh = box[2] - box[0], box[3] - box[1]
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": c + 1,
                             "bbox": [box[0], box[1], bw, bh], "area": bw * bh, "iscrowd": 0})
        n_boxes += len(anns)
        data = {"info": {"description": f"damoyolo synthetic shapes, seed {seed}"},
                "images": imgs, "annotations": anns, "categories": cats}
        tmp = out / "annotations" / f".{split}.json.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, out / "annotations" / f"{split}.json")
    return {"train": n_train, "val": n_val, "boxes": n_boxes}
