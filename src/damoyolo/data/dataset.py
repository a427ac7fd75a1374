"""The sample pipeline: :class:`DetectionDataset` turns an index's records into network-input
images and targets, with the release's augmentation in training.

Determinism: every sample draws its randomness from ``numpy.random.default_rng((seed, epoch,
index))``, so a sample depends only on the dataset seed, the epoch (``set_epoch``) and its
index -- not on the worker that produced it or on the worker count.

Image cache (``DetectionDataset.cache_images``): every image decoded once, stored at the
resolution the pipeline resizes it to, checked against the available memory first and shared
by the ranks of a node (:mod:`damoyolo.data.cache`).  Batches and loaders:
:mod:`damoyolo.data.loader` (their names stay importable from here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import AugmentConfig
from ..preprocess import ImageReadError, read_image
from ..runtime.cpu import usable_cpus
from ..runtime.memory import available_memory
from .cache import (AUTO_CACHE_MAX_BYTES, AUTO_CACHE_MAX_FRACTION, ImageCache,  # noqa: F401
                    auto_cache_fits, build_image_cache, clean_stale_caches, planned_bytes)
from .loader import (EpochSampler, SeededLoader, build_loader, collate,  # noqa: F401
                     loader_cache_copies, max_loader_workers)
from .records import DatasetError, DatasetIndex  # noqa: F401
from .sada import SADA
from .transforms import (filter_small, hflip, letterbox_to_input, mixup, mosaic, random_affine,
                         resize_image)

__all__ = ["DetectionDataset", "collate", "build_loader", "SeededLoader", "EpochSampler",
           "ImageCache", "usable_cpus", "max_loader_workers", "available_memory"]


class DetectionDataset(Dataset):
    """Images + targets at the network input size.

    ``__getitem__(i)`` -> ``(image, target)``: image float32 (3, H, W) RGB in [0, 255];
    target ``{"boxes": float32 (N, 4) xyxy input pixels, "labels": int64 (N,), "image_id": int,
    "orig_size": (h, w)}``.

    - ``train=False``: exactly the inference preprocessing (straight INTER_LINEAR resize).
    - ``train=True`` with strong augmentation on (default): mosaic -> random affine -> mixup ->
      drop boxes <= 4 px^2 -> horizontal flip -> SADA (``aug`` holds the recipe; ``None`` means
      ``AugmentConfig()``).
    - ``train=True`` after ``set_strong_augment(False)``: resize (keep-ratio + zero padding at
      the bottom/right, or stretch) and horizontal flip only.

    An image that cannot be read (corrupt, truncated, over the pixel limit) is skipped, and
    the sample says so: ``target["skipped"]`` lists ``"PATH: reason"`` for each.  In training
    another image takes its place (the next readable one); in evaluation the sample is a
    blank image whose ``image_id`` the evaluator leaves out of the scores.
    """

    def __init__(self, index: DatasetIndex, input_size: tuple[int, int] = (640, 640),
                 train: bool = False, aug: AugmentConfig | None = None, seed: int = 0) -> None:
        self.index = index
        self.records = index.records
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.train = bool(train)
        self.aug = aug if aug is not None else AugmentConfig()
        self.seed = int(seed)
        self.epoch = 0
        self.progress = 1.0
        self.strong = self.train
        self._cache: ImageCache | None = None  # decoded images (cache_images)
        self._unreadable: dict[int, str] = {}  # index -> reason (this process)
        self._skipped: list[str] = []  # "PATH: reason" for the sample being built
        self._labelled = np.array([i for i, r in enumerate(self.records) if len(r.labels)], np.int64)
        a = self.aug
        self._sada = SADA(a.sada_box_prob, a.sada_num_subpolicies, a.sada_scale_splits,
                          a.sada_params) if a.sada else None

    def __len__(self) -> int:
        return len(self.records)

    # -- switches (set before creating the loader iterator; workers copy the dataset) --
    def set_strong_augment(self, enabled: bool) -> None:
        """Turn mosaic / affine / mixup / SADA on or off (off for the last no_aug_epochs)."""
        self.strong = bool(enabled) and self.train

    def set_epoch(self, epoch: int) -> None:
        """Epoch number mixed into every sample's random seed."""
        self.epoch = int(epoch)

    def set_progress(self, fraction: float) -> None:
        """Fraction of the augmented epochs done; SADA's op probabilities scale with it
        (the official schedule). Values > 1 disable SADA. Default 1.0 (full strength)."""
        self.progress = float(fraction)

    # -- loading --
    @property
    def image_cache(self) -> "ImageCache | None":
        """The :class:`ImageCache` filled by :meth:`cache_images` (None before)."""
        return self._cache

    def _cache_keep_ratio(self) -> bool:
        # the resize every load goes through: keep-ratio or stretch (evaluation: stretch)
        return bool(self.aug.keep_ratio) if self.train else False

    def cache_bytes(self) -> int:
        """Bytes of one copy of the cache :meth:`cache_images` would build (planned exactly
        from the index's image sizes; nothing is decoded)."""
        return planned_bytes(self.records, self.input_size, self._cache_keep_ratio())

    def cache_images(self, progress: bool = False, share: bool = True,
                     cache_dir: str | Path | None = None, max_fraction: float = 0.8,
                     threads: int | None = None, workers: int = 0) -> int:
        """Decode every image once and keep it in RAM at the pipeline's resolution; returns
        the bytes of the cache (one copy).  The samples are the same with and without it.

        Checked against the available memory first (a :class:`DatasetError` when it would
        take more than ``max_fraction`` of it, counting the copies of the node's ranks and
        of the ``workers`` loader workers per rank that receive their own); shared by the
        ranks of a node under a ``torch.distributed`` process group (a file in ``cache_dir``,
        default /dev/shm, unless ``share=False``).  ``threads``: decoding threads (default:
        the usable cores, at most 16).  Call before creating the loader.  The details:
        :func:`damoyolo.data.cache.build_image_cache`.
        """
        self._cache = build_image_cache(
            self.records, self.input_size, self._cache_keep_ratio(), progress=progress,
            share=share, cache_dir=cache_dir, max_fraction=max_fraction, threads=threads,
            workers=workers)
        return self._cache.nbytes

    def _load(self, i: int, resized_ok: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image RGB uint8, boxes in its pixels, labels).  From the cache when there is one:
        the decoded image, or with ``resized_ok`` one already at the pipeline's resolution
        (boxes scaled like :func:`resize_image` does; the pipeline's resize then leaves both
        unchanged)."""
        c = self._cache
        hit = c.get(i, resized_ok and c.matches(self.input_size, self._cache_keep_ratio())) \
            if c is not None else None
        if hit is None:
            img, i = self._read(i)
            h0, w0 = img.shape[:2]
            resized = False
        else:
            img, resized, (h0, w0) = hit
            img = img.copy()
        r = self.records[i]
        boxes = r.boxes
        if (h0, w0) != (r.height, r.width) and len(boxes):
            # the annotation's declared size differs from the file: boxes refer to the file
            boxes = np.clip(boxes, 0, [w0, h0] * 2).astype(np.float32)
        if resized:  # resize_image's box arithmetic, same dtypes
            nh, nw = img.shape[:2]
            boxes = (boxes * np.array([nw / w0, nh / h0, nw / w0, nh / h0], dtype=np.float32)
                     ).astype(np.float32)
        return img, boxes.copy(), r.labels.copy()

    def _read(self, i: int) -> tuple[np.ndarray, int]:
        """(decoded image, index it belongs to).  An unreadable image is skipped (noted in
        ``self._skipped``): in training the next readable one is read instead; in evaluation
        a blank image of the annotated size stands in for it."""
        n = len(self.records)
        for k in range(n if self.train else 1):
            j = (i + k) % n
            if j in self._unreadable:
                reason = self._unreadable[j]
            else:
                try:
                    return read_image(self.records[j].path), j
                except ImageReadError as e:
                    reason = self._unreadable[j] = str(e)
            if k == 0:
                self._skipped.append(reason)
        if not self.train:
            r = self.records[i]
            return np.zeros((max(1, r.height), max(1, r.width), 3), np.uint8), i
        raise ImageReadError(f"{self.index.source}: none of its {n} images can be read "
                             f"(first: {self._unreadable[i]})")

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, int(i)))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        r = self.records[i]
        self._skipped = []
        if not self.train:  # straight INTER_LINEAR resize to the input size
            img, boxes, labels = self._load(i)
            img, boxes = resize_image(img, boxes, self.input_size, keep_ratio=False)
        elif self.strong:
            img, boxes, labels = self._strong(i, self._rng(i))
        else:
            rng = self._rng(i)
            img, boxes, labels = self._load(i)
            img, boxes = resize_image(img, boxes, self.input_size, self.aug.keep_ratio)
            img = letterbox_to_input(img, self.input_size, 0)
            if rng.random() < self.aug.flip_prob:
                img, boxes = hflip(img, boxes)
        sample = _to_sample(img, boxes, labels, r)
        if self._skipped:
            sample[1]["skipped"] = self._skipped
        return sample

    def _strong(self, i: int, rng: np.random.Generator):
        a = self.aug
        ih, iw = self.input_size
        if rng.random() < a.mosaic_prob:
            idx = [i] + [int(v) for v in rng.integers(0, len(self.records), 3)]
            canvas, boxes, labels = mosaic([self._load(k) for k in idx], self.input_size,
                                           a.keep_ratio, rng, a.pad_value)
            img, boxes, labels = random_affine(canvas, boxes, labels, self.input_size, a.degrees,
                                               a.translate, a.mosaic_scale, a.shear, rng, a.pad_value)
        else:
            img, boxes, labels = self._load(i)
            img, boxes = resize_image(img, boxes, self.input_size, a.keep_ratio)
            img = letterbox_to_input(img, self.input_size, a.pad_value)
        if len(labels) and len(self._labelled) and rng.random() < a.mixup_prob:
            j = int(self._labelled[rng.integers(len(self._labelled))])
            oimg, oboxes, olabels = self._load(j, resized_ok=False)  # mixup resizes it
            img, boxes, labels = mixup(img, boxes, labels, oimg, oboxes, olabels, self.input_size,
                                       a.mixup_scale, rng, a.pad_value)
        boxes, labels = filter_small(boxes, labels, 4.0)
        if rng.random() < a.flip_prob:
            img, boxes = hflip(img, boxes)
        img = img.astype(np.float32)
        if self._sada is not None:
            img, boxes, labels = self._sada(img, boxes, labels, rng, self.progress)
        return img, boxes, labels


def _to_sample(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, r) -> tuple[torch.Tensor, dict]:
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()
    return t, {"boxes": torch.from_numpy(np.asarray(boxes, np.float32).reshape(-1, 4).copy()),
               "labels": torch.from_numpy(np.asarray(labels, np.int64).reshape(-1).copy()),
               "image_id": int(r.image_id), "orig_size": (int(r.height), int(r.width))}


def _to_sample(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, r) -> tuple[torch.Tensor, dict]:
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()
    return t, {"boxes": torch.from_numpy(np.asarray(boxes, np.float32).reshape(-1, 4).copy()),
               "labels": torch.from_numpy(np.asarray(labels, np.int64).reshape(-1).copy()),
               "image_id": int(r.image_id), "orig_size": (int(r.height), int(r.width))}
