"""Inference preprocessing, identical to the official test-time path.

RGB channel order, ``cv2.resize`` straight to the network input size with
INTER_LINEAR (no keep-ratio at test time), uint8, HWC -> CHW, float32 in
[0, 255] (no /255, no mean/std).  Boxes predicted on the network input are mapped
back by the per-axis ratios original/input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor
from .errors import DamoyoloError
from .imageheader import ImageTooLargeError, check_image_pixels, header_size

__all__ = ["IMAGE_SUFFIXES", "ImageMeta", "read_image", "to_rgb_uint8", "preprocess_image",
           "preprocess_batch"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm",
                  ".ppm", ".pbm")
"""File suffixes (lower case) read as images, by the dataset readers and by ``predict``."""


@dataclass(frozen=True)
class ImageMeta:
    """Original image size and the factors mapping input-pixel boxes back to it."""

    orig_hw: tuple[int, int]
    input_hw: tuple[int, int]

    @property
    def scale_xy(self) -> tuple[float, float]:
        return (self.orig_hw[1] / self.input_hw[1], self.orig_hw[0] / self.input_hw[0])


class ImageReadError(DamoyoloError, ValueError):
    """An image file could not be read or decoded."""


def to_rgb_uint8(img: np.ndarray, source: str = "image", channel_order: str = "rgb"
                 ) -> np.ndarray:
    """Normalise an array image to HxWx3 uint8 RGB.

    Accepts grayscale (HxW or HxWx1), RGBA/BGRA (alpha dropped), and 16-bit or float
    images (16-bit scaled by 1/257; float in [0, 1] scaled by 255).
    ``channel_order`` is the order of a 3/4-channel input: ``"rgb"`` or ``"bgr"``.
    """
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
        raise ImageReadError(f"{source}: expected an HxW or HxWxC array, got "
                             f"{getattr(img, 'shape', type(img).__name__)}")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().clip(0, 255).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        scale = 255.0 if img.max(initial=0) <= 1.0 else 1.0
        img = (img * scale).round().clip(0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageReadError(f"{source}: unsupported pixel type {img.dtype}")
    if img.ndim == 2 or img.shape[2] == 1:
        return np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
    if img.shape[2] not in (3, 4):
        raise ImageReadError(f"{source}: unsupported channel count {img.shape[2]}")
    if channel_order == "bgr":
        # cvtColor writes a new contiguous array ~40x faster than a reversed-view copy
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB if img.shape[2] == 3 else cv2.COLOR_BGRA2RGB)
    return np.ascontiguousarray(img[:, :, :3])


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB; clear error for missing/corrupt files and for
    images over the pixel limit (checked from the header before decoding, see
    :mod:`damoyolo.imageheader`)."""
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{p}: no such image file")
    data = np.fromfile(str(p), dtype=np.uint8)
    if data.size == 0:
        raise ImageReadError(f"{p}: empty file")
    hw = header_size(data.tobytes())
    if hw is not None:  # before decoding: a small file can claim a huge image
        try:
            check_image_pixels(hw, str(p))
        except ImageTooLargeError as e:
            raise ImageReadError(str(e)) from None
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # OpenCV's own limits and decoder failures
        raise ImageReadError(f"{p}: not decodable ({str(e).strip().splitlines()[-1]})") from None
    if img is None:
        raise ImageReadError(f"{p}: not a readable image (corrupt or unsupported format)")
    return to_rgb_uint8(img, str(p), channel_order="bgr")


def preprocess_image(img_rgb: np.ndarray, input_hw: tuple[int, int]) -> tuple[Tensor, ImageMeta]:
    """HxWx3 uint8 RGB -> (3, H_in, W_in) float32 tensor in [0, 255] and its meta."""
    h, w = img_rgb.shape[:2]
    ih, iw = input_hw
    resized = cv2.resize(img_rgb, (iw, ih), interpolation=cv2.INTER_LINEAR)
    t = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1))).float()
    return t, ImageMeta((h, w), (ih, iw))


def preprocess_batch(images: list[np.ndarray], input_hw: tuple[int, int]
                     ) -> tuple[Tensor, list[ImageMeta]]:
    """Stack preprocessed images into a (B, 3, H_in, W_in) batch."""
    tensors, metas = zip(*(preprocess_image(im, input_hw) for im in images))
    return torch.stack(tensors), list(metas)
