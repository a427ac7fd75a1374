"""Synthetic COCO-format detection dataset (the embedded default for demos and tests).

What is in an image (all sizes in pixels of the generated image, whatever ``size`` is):

* Objects: a count drawn uniformly in 1-12 per image, each of one of six shape classes
  (circle, triangle, square, star, cross, ring) with a drawn size log-uniform in
  [1.25 * min_size_px, 0.45 * short image side], aspect ratio 0.6-1.6, any rotation and a
  shaded noisy colour.  A candidate that breaks a rule below is redrawn (up to 6 candidates
  per object) and the object is otherwise left out, so an image can have fewer.
* Size floor (``min_size_px``, default 8): every box is at least ``min_size_px`` wide *and*
  tall.  With the default about 20 % (size 320) / 15 % (size 640) of boxes have a min side
  of 8-16 px; the table in docs/data.md has the full distribution.
* Border: an object may stick out of the image by up to a quarter of its extent on each
  side; its box is the in-image part, and an object whose in-image part would be under the
  floor (a sliver) is not drawn at all.
* Occlusion: later objects are drawn over earlier ones.  Each object keeps at least 40 % (and
  at least 12) of its in-image pixels visible, and its visible pixels span at least
  ``min_size_px`` in x and in y; a candidate that would break this for any earlier object
  is not drawn.  Boxes are amodal for occlusion: the exact pixel extent of the whole in-image mask,
  hidden parts included.
* Clutter: textured backgrounds (low-frequency colour, stripes or grain, pixel noise) with
  4-15 unannotated distractors (line strokes, ellipse arcs of 40-200 degrees, soft blobs)
  drawn *under* the objects; half the images get a 3x3 Gaussian blur.  Nothing of a class
  is ever left in an image without a box.

Everything is a function of the arguments (seed, image count, size, floor, ...), not of the
number of worker processes; images are drawn in parallel.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from ..config import ConfigError
from ..outputs import atomic_write_text

__all__ = ["CLASSES", "synthesize", "draw_image"]

CLASSES = ("circle", "triangle", "square", "star", "cross", "ring")
_SIZES = ((640, 640), (480, 640), (640, 480))  # (h, w) at size=640
_SMALL_START = 1.25  # drawn sizes: log-uniform in [_SMALL_START * floor, 0.45 * short side]


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


def _extent(m: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) pixel extent (exclusive end) of a boolean mask, None when empty."""
    cols, rows = np.flatnonzero(m.any(0)), np.flatnonzero(m.any(1))
    if not len(cols):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def draw_image(seed: tuple[int, ...], hw: tuple[int, int], max_objects: int = 12,
               min_size_px: int = 8, classes: tuple[str, ...] = CLASSES
               ) -> tuple[np.ndarray, list[tuple[list[float], int]]]:
    """One synthetic RGB image and its ``[(xyxy box, class index), ...]``; objects are drawn
    from ``classes`` only (class index: position in ``classes``).

    Every object that is drawn is annotated, and every annotated object satisfies, in pixels
    of this image: its box (the in-image extent of its whole mask, including parts later
    hidden by other objects) is at least ``min_size_px`` wide and tall, and its visible pixels
    are >= 40 % of its in-image pixels, >= 12 pixels, and themselves span at least
    ``min_size_px`` in x and in y.  A candidate that would break any of this (too small, cut
    by the border to a sliver, or occluding an earlier object too much) is never drawn.
    """
    img, objs, _, _ = _draw(seed, hw, max_objects, min_size_px, classes)
    return img, objs


def _draw(seed: tuple[int, ...], hw: tuple[int, int], max_objects: int, min_size_px: int,
          classes: tuple[str, ...] = CLASSES) -> tuple[np.ndarray, list[tuple[list[float], int]], np.ndarray, list[int]]:
    """:func:`draw_image`, plus the (H, W) int16 map of which object owns each visible pixel
    (-1: none) and each object's in-image mask pixel count (visible or not)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    smax = 0.45 * min(h, w)
    smin = min(_SMALL_START * min_size_px, smax)
    if not 1 <= min_size_px <= smax:
        raise ConfigError(f"min_size_px must be in [1, {smax:.0f}] for a {w}x{h} image, "
                          f"got {min_size_px}")
    img = _background(rng, h, w)
    owner = np.full((h, w), -1, np.int16)
    areas: list[int] = []
    objs: list[tuple[int, tuple[int, int, int, int]]] = []
    n = int(rng.integers(1, max_objects + 1))
    for _ in range(n):
        for _attempt in range(6):
            cls_i = int(rng.integers(len(classes)))
            size = math.exp(rng.uniform(math.log(smin), math.log(smax)))
            mask, col = _object_patch(rng, classes[cls_i], size)
            ph, pw = mask.shape
            x0 = int(rng.integers(-pw // 4, w - 3 * pw // 4 + 1))
            y0 = int(rng.integers(-ph // 4, h - 3 * ph // 4 + 1))
            ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + pw, w), min(y0 + ph, h)
            if ix1 <= ix0 or iy1 <= iy0:
                continue
            m = mask[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] > 0
            ext = _extent(m)
            if m.sum() < 12 or ext is None or min(ext[2] - ext[0], ext[3] - ext[1]) < min_size_px:
                continue  # too small, or cut by the border below the floor: not drawn
            box = (ix0 + ext[0], iy0 + ext[1], ix0 + ext[2], iy0 + ext[3])
            under = owner[iy0:iy1, ix0:ix1][m]
            ok = True
            for k in np.unique(under[under >= 0]).tolist():  # earlier objects this one covers
                bx0, by0, bx1, by1 = objs[k][1]
                vis = owner[by0:by1, bx0:bx1] == k
                # the new object's pixels inside object k's box
                cx0, cy0, cx1, cy1 = max(bx0, ix0), max(by0, iy0), min(bx1, ix1), min(by1, iy1)
                vis[cy0 - by0:cy1 - by0, cx0 - bx0:cx1 - bx0] &= ~m[cy0 - iy0:cy1 - iy0,
                                                                     cx0 - ix0:cx1 - ix0]
                left = int(vis.sum())
                e = _extent(vis)
                if (left < max(12, 0.4 * areas[k]) or e is None
                        or min(e[2] - e[0], e[3] - e[1]) < min_size_px):
                    ok = False
                    break
            if not ok:
                continue
            k = len(objs)
            reg = img[iy0:iy1, ix0:ix1]
            reg[m] = col[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0][m]
            owner[iy0:iy1, ix0:ix1][m] = k
            areas.append(int(m.sum()))
            objs.append((cls_i, box))
            break
    # light global blur/noise so edges are not perfectly crisp
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    return img, [([float(v) for v in box], c) for c, box in objs], owner, areas


def _work(job: tuple) -> tuple[int, str, int, int, list]:
    seed, i, out, h, w, quality, min_size_px, classes = job
    img, anns = draw_image((seed, i), (h, w), min_size_px=min_size_px, classes=classes)
    cv2.imwrite(out, img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return i, out, h, w, anns


def synthesize(out_dir: str | Path, images: int = 200, seed: int = 0, size: int = 640,
               val_fraction: float = 0.2, workers: int | None = None, quality: int = 90,
               min_size_px: int = 8, classes: tuple[str, ...] | list[str] | None = None
               ) -> dict:
    """Write ``out_dir/{train,val}/*.jpg`` and ``out_dir/annotations/{train,val}.json``.

    images: total count (val gets ``round(images * val_fraction)``, at least 1 when images >= 2);
    size: long image side (images are size x size, or 3:4 / 4:3).  Category ids are 1..6.
    min_size_px: size floor in pixels of the generated image, whatever ``size`` is: every box
    is at least this wide and tall, and so is the visible part of every object (see
    :func:`draw_image`); at most 0.45 x the short image side (``0.45 * round(0.75 * size)``).
    The output is a function of (images, seed, size, val_fraction, quality, min_size_px) only,
    not of ``workers``.  classes: draw (and declare) only these of :data:`CLASSES`, with
    category ids 1..len(classes) in the given order (e.g. ``("star",)`` for a one-class set;
    ``None``: all six).  Returns ``{"train": n_train, "val": n_val, "boxes": n_boxes}``.
    """
    if images < 1:
        raise ConfigError(f"images must be >= 1, got {images}")
    short = min(int(round(sh * size / 640)) for sh, _ in _SIZES)
    if int(min_size_px) != min_size_px or not 1 <= min_size_px <= 0.45 * short:
        raise ConfigError(f"min_size_px must be an integer in [1, {0.45 * short:.0f}] at size "
                          f"{size}, got {min_size_px}")
    min_size_px = int(min_size_px)
    classes = tuple(CLASSES if classes is None else classes)
    bad = [c for c in classes if c not in CLASSES]
    if bad or not classes or len(set(classes)) != len(classes):
        raise ConfigError(f"classes must be distinct names of {', '.join(CLASSES)}; got "
                          f"{', '.join(classes) or 'none'}")
    out = Path(out_dir)
    _claim(out)
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
        jobs[split].append((seed, i, str(out / split / f"{i:06d}.jpg"), h, w, quality,
                            min_size_px, classes))
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    all_jobs = jobs["train"] + jobs["val"]
    if workers > 1 and images > 8:
        with ProcessPoolExecutor(workers) as ex:
            results = list(ex.map(_work, all_jobs, chunksize=max(1, images // (workers * 8))))
    else:
        results = [_work(j) for j in all_jobs]
    by_i = {r[0]: r for r in results}
    cats = [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(classes)]
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
        atomic_write_text(out / "annotations" / f"{split}.json", json.dumps(data))
    return {"train": n_train, "val": n_val, "boxes": n_boxes}


SYNTH_MARK = ".damoyolo-synth"  # marks a folder written by synthesize()


def _claim(out: Path) -> None:
    """A new or empty folder, or one that :func:`synthesize` wrote before (rewritten);
    any other folder holding files is refused, so a user's dataset is never overwritten."""
    from ..outputs import OutputError, is_empty_dir
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is a file; name a folder for the dataset")
    ours = (out / SYNTH_MARK).exists() or (out / "demo_params.json").exists()  # or older
    if out.is_dir() and not ours and not is_empty_dir(out):
        raise OutputError(f"{out}: holds files that are not a synthetic dataset written by "
                          f"damoyolo; name a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / SYNTH_MARK).write_text("synthetic dataset written by damoyolo (data synth); it "
                                  "is rewritten by the next data synth into this folder\n")
