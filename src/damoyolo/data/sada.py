"""SADA: scale-aware, box-level augmentation of the DAMO-YOLO recipe.

A searched policy (``AugmentConfig.sada_params``) holds ``num_subpolicies`` pairs of
(colour op, probability, level) and (geometric op, probability, level), plus per-scale
ratios.  For each image one sub-policy is drawn; each of its two ops fires with
``probability * progress`` (progress = fraction of the augmented epochs done, so the
augmentation ramps up during training).  When it fires, boxes are sampled with a
probability that depends on their area bucket (small / medium / large, thresholds
``sada_scale_splits`` scaled by ``min(H, W) / 800``), and:

- colour ops transform the whole image, then are blended in only around the sampled boxes
  with a sum of Gaussian maps whose spread depends on the box scale;
- geometric ops (flip, rotate, shear, translate) transform the crop of each sampled box and
  paste it back blended with a Gaussian map centred on the box; a translated box leaves a
  copy of the object at the new place, which gets its own box (same label).

Images are HxWx3 float32 RGB in [0, 255]; boxes are xyxy pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..config import ConfigError

__all__ = ["SADA", "COLOR_OPS", "GEOMETRIC_OPS", "gaussian_map"]

_MAX_LEVEL = 10.0
_RATIO_LIST = (0.2, 0.4, 0.6, 0.8, 1.0, 2, 4, 6, 8, 10)
_FILL = np.array([102.9801, 115.9465, 122.7717], np.float32).astype(np.int32) / 255.0


# ----------------------------------------------------------------------------- colour ops (0..1)

def _blend(a: np.ndarray, b: np.ndarray, f: float) -> np.ndarray:
    """a + f (b - a); clipped to [0, 1] when extrapolating (f outside (0, 1))."""
    if f == 0.0:
        return a
    if f == 1.0:
        return b
    t = a + f * (b - a)
    return t if 0.0 < f < 1.0 else np.clip(t, 0.0, 1.0)


def _gray(img: np.ndarray) -> np.ndarray:
    g = img[..., 0] * 0.2989 + img[..., 1] * 0.5870 + img[..., 2] * 0.1140
    return np.repeat(g[..., None], 3, axis=2)


def autocontrast(img: np.ndarray, level: float) -> np.ndarray:
    lo = img.min(axis=(0, 1), keepdims=True)
    hi = img.max(axis=(0, 1), keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    out = np.clip((img - lo) / span, 0.0, 1.0)
    return np.where(hi > lo, out, img).astype(np.float32)


def equalize(img: np.ndarray, level: float) -> np.ndarray:
    """Histogram equalisation per channel (PIL semantics) on a 0..1 image."""
    out = np.empty_like(img)
    v = img * 255.0
    for c in range(3):
        ch = v[..., c]
        hist = np.bincount(np.clip((ch * (256 / 255.0)).astype(np.int64), 0, 255).ravel(),
                           minlength=256).astype(np.float64)
        nz = hist[hist != 0]
        step = (nz.sum() - nz[-1]) // 255 if len(nz) else 0
        if step == 0:
            out[..., c] = ch
            continue
        lut = (np.cumsum(hist) + step // 2) // step
        lut = np.clip(np.concatenate([[0.0], lut[:-1]]), 0, 255)
        out[..., c] = lut[np.clip(ch.astype(np.int64), 0, 255)]
    return (out / 255.0).astype(np.float32)


def solarize_add(img: np.ndarray, level: float) -> np.ndarray:
    add = level / _MAX_LEVEL * 0.4296875
    return np.where(img <= 0.5, np.clip(img + add, 0.0, 1.0), img).astype(np.float32)


def color(img: np.ndarray, level: float) -> np.ndarray:
    return _blend(_gray(img), img, level / _MAX_LEVEL * 1.8 + 0.1)


def contrast(img: np.ndarray, level: float) -> np.ndarray:
    mean = np.full_like(img, _gray(img).mean())
    return _blend(mean, img, max(level / _MAX_LEVEL * 1.8 + 0.1, 1e-6))


def brightness(img: np.ndarray, level: float) -> np.ndarray:
    return _blend(np.zeros_like(img), img, level / _MAX_LEVEL * 1.8 + 0.1)


_SHARP_K = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13.0


def sharpness(img: np.ndarray, level: float) -> np.ndarray:
    smooth = cv2.filter2D(img, -1, _SHARP_K, borderType=cv2.BORDER_REFLECT_101)
    return _blend(smooth, img, level / _MAX_LEVEL * 1.8 + 0.1)


# order matters: the policy indexes these lists
COLOR_OPS = {"AutoContrast": autocontrast, "Equalize": equalize, "SolarizeAdd": solarize_add,
             "Color": color, "Contrast": contrast, "Brightness": brightness, "Sharpness": sharpness}
GEOMETRIC_OPS = ("hflip", "rotate", "shearX", "shearY", "translateX", "translateY")


# ----------------------------------------------------------------------------- gaussian maps

def gaussian_map(hw: tuple[int, int], boxes: np.ndarray, scale_ratios: tuple[int, int, int] | None = None,
                 scale_splits: tuple[float, float, float] | None = None) -> np.ndarray:
    """Sum of separable Gaussians, one per xyxy box, on an (H, W) grid (not clamped).

    Centre: the box's top-left + floor(size / 2); std per axis: (box side / image side) *
    sqrt(r * H * W / (2 pi)), with r = 1 or, with ``scale_ratios`` (indices into
    0.2 .. 10), a factor normalising by the box area per scale bucket.
    """
    H, W = hw
    g = np.zeros((H, W), np.float32)
    rows = np.arange(H, dtype=np.float32)
    cols = np.arange(W, dtype=np.float32)
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4):
        bh, bw = y2 - y1, x2 - x1
        area = bh * bw
        if area <= 0:
            continue
        if scale_ratios is None:
            r = 1.0
        elif area < scale_splits[0]:
            r = _RATIO_LIST[scale_ratios[0]] * scale_splits[0] / area
        elif area < scale_splits[1]:
            r = _RATIO_LIST[scale_ratios[1]] * (scale_splits[0] + scale_splits[1]) / 2.0 / area
        elif area < scale_splits[2]:
            r = _RATIO_LIST[scale_ratios[2]] * scale_splits[2] / area
        else:
            r = _RATIO_LIST[scale_ratios[2]]
        r_var = math.sqrt(r * H * W / (2 * math.pi))
        sr, sc = bh / H * r_var, bw / W * r_var
        my, mx = y1 + bh // 2, x1 + bw // 2
        gy = np.exp(-((rows - my) ** 2) / (2 * sr * sr))
        gx = np.exp(-((cols - mx) ** 2) / (2 * sc * sc))
        g += np.outer(gy, gx)
    return g


# ----------------------------------------------------------------------------- policy

@dataclass(frozen=True)
class SubPolicy:
    color_op: str
    color_prob: float
    color_level: int
    geo_op: str
    geo_prob: float
    geo_level: int


def decode_policy(params: tuple[int, ...], num_subpolicies: int
                  ) -> tuple[list[SubPolicy], tuple[int, ...], tuple[int, ...]]:
    """Decode the searched parameter tuple into sub-policies and (area, prob) scale ratios."""
    p = list(params)[4:]
    need = num_subpolicies * 6 + 6
    if len(p) < need:
        raise ConfigError(f"sada_params: need {need + 4} values for {num_subpolicies} sub-policies, "
                          f"got {len(params)}")
    cnames = list(COLOR_OPS)
    subs = []
    for i in range(num_subpolicies):
        a = p[i * 6:(i + 1) * 6]
        subs.append(SubPolicy(cnames[a[0] % len(cnames)], a[1] * 0.1, a[2],
                              GEOMETRIC_OPS[a[3] % len(GEOMETRIC_OPS)], a[4] * 0.1, a[5]))
    s = num_subpolicies * 6
    return subs, tuple(p[s:s + 3]), tuple(p[s + 3:s + 6])


class SADA:
    """Scale-aware box-level augmentation (see module docstring)."""

    def __init__(self, box_prob: float = 0.3, num_subpolicies: int = 5,
                 scale_splits: tuple[int, int, int] = (2048, 10240, 51200),
                 params: tuple[int, ...] | None = None) -> None:
        from ..config import SADA_POLICY_PARAMS
        self.box_prob = box_prob
        self.scale_splits = tuple(scale_splits)
        self.policies, self.area_ratios, self.prob_ratios = decode_policy(
            params or SADA_POLICY_PARAMS, num_subpolicies)

    def _box_probs(self, boxes: np.ndarray, ratios: tuple[int, ...], splits: list[float]) -> np.ndarray:
        r = np.asarray(ratios, np.float64)
        r = r / r.sum()
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        bucket = np.where(area < splits[0], 0, np.where(area < splits[1], 1, 2))
        return np.where(area > 0, self.box_prob * r[bucket], 0.0)

    def __call__(self, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                 rng: np.random.Generator, progress: float = 1.0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """img HxWx3 float32 [0, 255]; returns the augmented (img, boxes, labels)."""
        if progress > 1.0:
            return img, boxes, labels
        sub = self.policies[int(rng.integers(len(self.policies)))]
        h, w = img.shape[:2]
        splits = [a * min(h, w) / 800 for a in self.scale_splits]
        x = img
        # colour op
        if rng.random() <= sub.color_prob * progress and len(boxes):
            probs = self._box_probs(boxes, self.area_ratios, splits)
            sel = boxes[rng.random(len(boxes)) < probs]
            if len(sel):
                x01 = x / 255.0
                aug = COLOR_OPS[sub.color_op](x01, sub.color_level)
                g = np.clip(gaussian_map((h, w), sel, self.area_ratios, splits), 0, 1)[..., None]
                x = ((x01 * (1 - g) + aug * g) * 255.0).astype(np.float32)
        # geometric op
        if rng.random() <= sub.geo_prob * progress and len(boxes):
            probs = self._box_probs(boxes, self.prob_ratios, splits)
            chosen = np.nonzero(rng.random(len(boxes)) < probs)[0]
            if len(chosen):
                x, boxes, labels = self._geometric(x, boxes, labels, chosen, sub.geo_op,
                                                   sub.geo_level, rng)
        return x, boxes, labels

    def _geometric(self, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                   chosen: np.ndarray, op: str, level: int, rng: np.random.Generator):
        h, w = img.shape[:2]
        angle, shear, tx, ty = 0.0, (0.0, 0.0), 0.0, 0.0
        if op == "rotate":
            angle = level / _MAX_LEVEL * 30
        elif op == "shearX":
            shear = (level / _MAX_LEVEL * 15, 0.0)
        elif op == "shearY":
            shear = (0.0, level / _MAX_LEVEL * 15)
        elif op == "translateX":
            tx = level / _MAX_LEVEL * 120.0
        elif op == "translateY":
            ty = level / _MAX_LEVEL * 120.0
        if rng.random() < 0.5:
            angle, shear, tx, ty = -angle, (-shear[0], -shear[1]), -tx, -ty
        out = img.copy()
        new_boxes = []
        x01 = img / 255.0
        for i in chosen:
            x1, y1, x2, y2 = (int(v) for v in np.clip(boxes[i], 0, [w, h, w, h]))
            if x1 >= x2 or y1 >= y2:
                continue
            crop = x01[y1:y2, x1:x2]
            if op == "hflip":
                crop = crop[:, ::-1]
            elif op in ("rotate", "shearX", "shearY"):
                crop = _affine_crop(crop, angle, shear)
            # paste position (translated for translate ops), clipped to the image
            px1, py1 = int(np.clip(x1 + tx, 0, w)), int(np.clip(y1 + ty, 0, h))
            px2, py2 = int(np.clip(x2 + tx, 0, w)), int(np.clip(y2 + ty, 0, h))
            if px2 <= px1 or py2 <= py1:
                continue
            # when clipped at the left/top, the visible part of the crop is its right/bottom
            cx1, cy1 = px1 - int(x1 + tx), py1 - int(y1 + ty)
            patch = crop[cy1:cy1 + (py2 - py1), cx1:cx1 + (px2 - px1)]
            ph, pw = patch.shape[:2]
            if ph == 0 or pw == 0:
                continue
            region = out[py1:py1 + ph, px1:px1 + pw] / 255.0
            g = gaussian_map((ph, pw), np.array([[0, 0, pw, ph]], np.float32))[..., None]
            out[py1:py1 + ph, px1:px1 + pw] = (g * patch + (1 - g) * region) * 255.0
            if tx or ty:
                nb = boxes[i] + np.array([tx, ty, tx, ty], np.float32)
                nb = np.clip(nb, 0, [w, h, w, h]).astype(np.float32)
                if nb[2] - nb[0] > 1 and nb[3] - nb[1] > 1:
                    new_boxes.append((nb, labels[i]))
        if new_boxes:
            boxes = np.concatenate([boxes, np.stack([b for b, _ in new_boxes])]).astype(np.float32)
            labels = np.concatenate([labels, np.array([lab for _, lab in new_boxes], np.int64)])
        return out, boxes, labels


def _affine_crop(crop: np.ndarray, angle: float, shear: tuple[float, float]) -> np.ndarray:
    """Rotate (degrees) and shear (degrees along x, y) a crop about its centre; bilinear."""
    ch, cw = crop.shape[:2]
    c = ((cw - 1) * 0.5, (ch - 1) * 0.5)
    R = np.eye(3)
    R[:2] = cv2.getRotationMatrix2D(c, angle, 1.0)
    S = np.eye(3)
    S[0, 1], S[1, 0] = math.tan(math.radians(shear[0])), math.tan(math.radians(shear[1]))
    T1 = np.array([[1, 0, -c[0]], [0, 1, -c[1]], [0, 0, 1]])
    T2 = np.array([[1, 0, c[0]], [0, 1, c[1]], [0, 0, 1]])
    M = R @ (T2 @ S @ T1)
    fill = tuple(float(v) for v in _FILL)
    return cv2.warpAffine(np.ascontiguousarray(crop, dtype=np.float32), M[:2], (cw, ch),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
