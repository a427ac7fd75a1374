"""Torch dataset, collate and a deterministic loader.

Determinism: every sample draws its randomness from ``numpy.random.default_rng((seed, epoch,
index))``, so a sample depends only on the dataset seed, the epoch (``set_epoch``) and its
index -- not on the worker that produced it or on the worker count.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import AugmentConfig
from ..preprocess import read_image
from .records import DatasetIndex
from .sada import SADA
from .transforms import (filter_small, hflip, letterbox_to_input, mixup, mosaic, random_affine,
                         resize_image)

__all__ = ["DetectionDataset", "collate", "build_loader", "SeededLoader", "EpochSampler"]


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
        self._cache: list[np.ndarray] | None = None  # decoded images (cache_images)
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
    def cache_images(self, progress: bool = False) -> int:
        """Decode every image once and keep it in RAM (RGB uint8); returns the bytes held.

        Call before creating the loader: forked workers share the cache copy-on-write, so
        the JPEG/PNG decoding (about half of the augmentation pipeline's time) is paid once
        per run instead of once per sample and epoch.  Memory: sum of h x w x 3 bytes.
        """
        it = range(len(self.records))
        if progress:
            from tqdm import tqdm
            it = tqdm(it, desc="caching images", leave=False)
        self._cache = [read_image(self.records[i].path) for i in it]
        return int(sum(a.nbytes for a in self._cache))

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = self.records[i]
        img = self._cache[i].copy() if self._cache is not None else read_image(r.path)
        boxes = r.boxes
        if img.shape[:2] != (r.height, r.width) and len(boxes):
            # the annotation's declared size differs from the file: boxes refer to the file
            boxes = np.clip(boxes, 0, [img.shape[1], img.shape[0]] * 2).astype(np.float32)
        return img, boxes.copy(), r.labels.copy()

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, int(i)))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        r = self.records[i]
        if not self.train:
            img, boxes, labels = self._load(i)
            h0, w0 = img.shape[:2]
            ih, iw = self.input_size
            img = cv2.resize(img, (iw, ih), interpolation=cv2.INTER_LINEAR)
            boxes = boxes * np.array([iw / w0, ih / h0, iw / w0, ih / h0], np.float32)
        elif self.strong:
            img, boxes, labels = self._strong(i, self._rng(i))
        else:
            rng = self._rng(i)
            img, boxes, labels = self._load(i)
            img, boxes = resize_image(img, boxes, self.input_size, self.aug.keep_ratio)
            img = letterbox_to_input(img, self.input_size, 0)
            if rng.random() < self.aug.flip_prob:
                img, boxes = hflip(img, boxes)
        return _to_sample(img, boxes, labels, r)

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
            oimg, oboxes, olabels = self._load(j)
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


def collate(batch: list[tuple[torch.Tensor, dict]], size_divisible: int = 32
            ) -> tuple[torch.Tensor, list[dict]]:
    """Stack images zero-padded (bottom/right) to the max H/W rounded up to ``size_divisible``."""
    imgs = [b[0] for b in batch]
    H = int(math.ceil(max(i.shape[1] for i in imgs) / size_divisible) * size_divisible)
    W = int(math.ceil(max(i.shape[2] for i in imgs) / size_divisible) * size_divisible)
    out = imgs[0].new_zeros((len(imgs), 3, H, W))
    for k, im in enumerate(imgs):
        out[k, :, :im.shape[1], :im.shape[2]] = im
    return out, [b[1] for b in batch]


class EpochSampler(Sampler[int]):
    """Indices of this rank's share, a function of (seed, epoch) only.

    Shuffled with a generator seeded by ``seed + epoch`` (or sequential); with several ranks
    the list is padded with wrapped indices so every rank gets the same number of samples
    (as ``DistributedSampler`` does) and rank ``r`` takes every ``world``-th index from ``r``.
    """

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world: int = 1,
                 shuffle: bool = True) -> None:
        self.n, self.seed, self.rank, self.world, self.shuffle = n, seed, rank, world, shuffle
        self.epoch = 0
        self.per_rank = math.ceil(n / world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            idx = torch.randperm(self.n, generator=g).tolist()
        else:
            idx = list(range(self.n))
        total = self.per_rank * self.world
        idx = (idx * math.ceil(total / max(self.n, 1)))[:total]
        return iter(idx[self.rank:total:self.world])

    def __len__(self) -> int:
        return self.per_rank


def _worker_init(_: int) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


class SeededLoader(DataLoader):
    """DataLoader with ``set_epoch(e)``: reseeds the shuffle and every sample's augmentation.

    Call ``set_epoch`` (and ``dataset.set_strong_augment`` / ``set_progress``) before iterating;
    workers are not persistent, so each epoch's workers see the current dataset state.
    """

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def build_loader(dataset: Dataset, batch_size: int, workers: int = 0, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False, sampler: Sampler | None = None
                 ) -> SeededLoader:
    """A multi-worker loader deterministic for a given seed (and any worker count).

    ``sampler`` (e.g. a ``DistributedSampler``) replaces the built-in :class:`EpochSampler`;
    its ``set_epoch`` is called by ``loader.set_epoch``.  With ``workers > 0`` OpenCV is set to
    one thread in this process (its thread pool deadlocks forked workers).
    """
    if sampler is None:
        sampler = EpochSampler(len(dataset), seed=seed, shuffle=shuffle)
    if workers > 0:
        # OpenCV's thread pool does not survive fork(): forked workers deadlock in cv2 calls
        # once the parent has used it.  One cv2 thread per process (workers do the parallelism).
        cv2.setNumThreads(1)
    return SeededLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        collate_fn=collate, drop_last=drop_last, worker_init_fn=_worker_init,
                        persistent_workers=False, pin_memory=False)
