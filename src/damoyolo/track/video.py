"""A synthetic video of moving shape objects with MOT ground truth (the embedded default).

The frames look like the images of :mod:`damoyolo.data.synthetic` (the same shapes, from
:mod:`damoyolo.data.shapes`: six classes, shaded noisy colours, textured cluttered
background), so a model trained on that data detects them.  What moves (all in pixels of
the generated frame):

* ``objects`` shapes (default 8), each of a random class, size log-uniform in
  [0.08, 0.22] x the short side, rotation and colour fixed for the whole video;
* half of them (rounded down to pairs) start in **crossing pairs**: two objects on the same
  row at 20 % and 80 % of the width moving towards each other, so they overlap mid-frame;
  the others start anywhere with a random direction; speeds are 0.4-1.0 % of the width per
  frame, and objects bounce off the frame border (they stay inside it);
* a fixed depth order: an object is drawn over those before it (**occlusions**);
* a vertical **pillar** (an unlabelled textured bar, 8 % of the width) is drawn over
  everything at 60 % of the width: objects pass behind it and disappear for a while;
* fresh pixel noise every frame.

Ground truth per frame and object: the amodal box (in-image extent of the whole mask,
hidden parts included) and the visible fraction of its pixels, written as MOT16-style rows
``frame,id,x,y,w,h,1,class+1,visibility`` (1-based frame and id).  Evaluation ignores rows
with visibility < 0.4 (:func:`damoyolo.track.metrics.evaluate_mot`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..config import ConfigError
from ..data.shapes import CLASSES, background, object_patch
from ..outputs import atomic_write_text

__all__ = ["synth_frames", "write_synth_video", "gt_rows", "MIN_VISIBILITY"]

MIN_VISIBILITY = 0.4  # the visible fraction below which an object is not expected to be seen


def _init_objects(rng: np.random.Generator, n: int, h: int, w: int) -> list[dict]:
    objs = []
    short = min(h, w)
    n_pairs = (n // 2) // 2
    for k in range(n):
        cls = int(rng.integers(len(CLASSES)))
        size = math.exp(rng.uniform(math.log(0.08 * short), math.log(0.22 * short)))
        mask, col = object_patch(rng, CLASSES[cls], size)
        speed = rng.uniform(0.004, 0.010) * w
        ph, pw = mask.shape
        if k < 2 * n_pairs:  # crossing pairs
            row = (k // 2 + 1) / (n_pairs + 1) * h
            left = k % 2 == 0
            cx = 0.2 * w if left else 0.8 * w
            cy = row + rng.uniform(-0.03, 0.03) * h
            ang = rng.uniform(-0.15, 0.15) + (0.0 if left else math.pi)
        else:
            cx, cy = rng.uniform(pw / 2, w - pw / 2), rng.uniform(ph / 2, h - ph / 2)
            ang = rng.uniform(0, 2 * math.pi)
        objs.append({"cls": cls, "mask": mask > 0, "col": col,
                     "pos": np.array([cx - pw / 2, cy - ph / 2]),
                     "vel": speed * np.array([math.cos(ang), math.sin(ang)])})
    order = rng.permutation(n)  # depth order: later drawn over earlier
    return [objs[i] | {"id": int(i) + 1} for i in order]


def synth_frames(frames: int = 150, seed: int = 0, size: int = 320, objects: int = 8,
                 pillar: bool = True) -> Iterator[tuple[np.ndarray, list[dict]]]:
    """Yield ``(frame HxWx3 uint8 RGB, [ {"id", "cls", "box" xyxy, "visibility"}, ... ])``.

    Frames are ``size`` wide and ``round(0.75 * size)`` high.  A function of the arguments.
    """
    if frames < 1 or objects < 0 or size < 64:
        raise ConfigError(f"synthetic video needs frames >= 1, objects >= 0 and size >= 64 "
                          f"(got {frames}, {objects}, {size})")
    rng = np.random.default_rng((seed, 4242))
    w, h = int(size), int(round(0.75 * size))
    bg = background(rng, h, w)
    objs = _init_objects(rng, objects, h, w)
    px0, px1 = int(0.6 * w - 0.04 * w), int(0.6 * w + 0.04 * w)
    pillar_img = np.clip(rng.normal(0, 10, (h, px1 - px0, 1))
                         + rng.integers(40, 200, 3)[None, None, :], 0, 255).astype(np.uint8)
    for _ in range(frames):
        img = bg.copy()
        owner = np.full((h, w), -1, np.int16)
        gt = []
        for k, o in enumerate(objs):
            m, col = o["mask"], o["col"]
            ph, pw = m.shape
            x0, y0 = (int(round(v)) for v in o["pos"])
            ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + pw, w), min(y0 + ph, h)
            if ix1 <= ix0 or iy1 <= iy0:
                gt.append(None)
                continue
            mm = m[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
            img[iy0:iy1, ix0:ix1][mm] = col[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0][mm]
            owner[iy0:iy1, ix0:ix1][mm] = k
            ys, xs = np.nonzero(mm)
            box = [ix0 + xs.min(), iy0 + ys.min(), ix0 + xs.max() + 1, iy0 + ys.max() + 1]
            gt.append({"id": o["id"], "cls": o["cls"], "box": [float(v) for v in box],
                       "area": int(mm.sum())})
        if pillar:
            img[:, px0:px1] = pillar_img
            owner[:, px0:px1] = -1
        vis = np.bincount(owner.ravel() + 1, minlength=len(objs) + 1)[1:]
        noise = rng.integers(-8, 9, (h, w, 1), dtype=np.int16)
        img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        out = []
        for k, g in enumerate(gt):
            if g is not None:
                out.append({"id": g["id"], "cls": g["cls"], "box": g["box"],
                            "visibility": round(float(vis[k]) / max(g["area"], 1), 3)})
        yield img, out
        for o in objs:  # move, bouncing off the border
            ph, pw = o["mask"].shape
            o["pos"] = o["pos"] + o["vel"]
            lim = np.array([w - pw, h - ph], float)
            for d in range(2):
                if o["pos"][d] < 0 or o["pos"][d] > lim[d]:
                    o["vel"][d] = -o["vel"][d]
                    o["pos"][d] = min(max(o["pos"][d], 0.0), lim[d])


def gt_rows(frame: int, objs: list[dict]) -> list[str]:
    """MOT16-style ground-truth lines of one frame (1-based ``frame``)."""
    return [f"{frame},{o['id']},{o['box'][0]:.0f},{o['box'][1]:.0f},"
            f"{o['box'][2] - o['box'][0]:.0f},{o['box'][3] - o['box'][1]:.0f},1,"
            f"{o['cls'] + 1},{o['visibility']:.3f}" for o in objs]


def write_synth_video(path: str | Path, frames: int = 150, seed: int = 0, size: int = 320,
                      objects: int = 8, fps: float = 25.0, pillar: bool = True) -> dict:
    """Write the video (``.mp4``: mp4v, ``.avi``: MJPG) and ``<stem>_gt.txt`` beside it.

    Returns ``{"video", "gt", "frames", "objects", "width", "height", "fps"}``.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fourcc = "MJPG" if p.suffix.lower() == ".avi" else "mp4v"
    w, h = int(size), int(round(0.75 * size))
    writer = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
    if not writer.isOpened():
        raise OSError(f"{p}: cannot open a video writer ({fourcc})")
    lines = []
    try:
        for i, (img, objs) in enumerate(synth_frames(frames, seed, size, objects, pillar)):
            writer.write(np.ascontiguousarray(img[:, :, ::-1]))
            lines += gt_rows(i + 1, objs)
    finally:
        writer.release()
    gt = p.with_name(f"{p.stem}_gt.txt")
    atomic_write_text(gt, "".join(ln + "\n" for ln in lines))
    return {"video": str(p), "gt": str(gt), "frames": frames, "objects": objects,
            "width": w, "height": h, "fps": float(fps)}
