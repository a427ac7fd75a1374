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
from .shapes import CLASSES, background, object_patch

__all__ = ["CLASSES", "synthesize", "draw_image"]

_SIZES = ((640, 640), (480, 640), (640, 480))  # (h, w) at size=640
_SMALL_START = 1.25  # drawn sizes: log-uniform in [_SMALL_START * floor, 0.45 * short side]




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
    img = background(rng, h, w)
    owner = np.full((h, w), -1, np.int16)
    areas: list[int] = []
    objs: list[tuple[int, tuple[int, int, int, int]]] = []
    n = int(rng.integers(1, max_objects + 1))
    for _ in range(n):
        for _attempt in range(6):
            cls_i = int(rng.integers(len(classes)))
            size = math.exp(rng.uniform(math.log(smin), math.log(smax)))
            mask, col = object_patch(rng, classes[cls_i], size)
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
