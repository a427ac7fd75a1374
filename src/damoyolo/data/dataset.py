"""Torch dataset, collate and a deterministic loader.

Determinism: every sample draws its randomness from ``numpy.random.default_rng((seed, epoch,
index))``, so a sample depends only on the dataset seed, the epoch (``set_epoch``) and its
index -- not on the worker that produced it or on the worker count.

Image cache (``DetectionDataset.cache_images``): every image decoded once, stored at the
resolution the pipeline resizes it to, checked against the available memory first and shared
by the ranks of a node (see :class:`ImageCache`).
"""

from __future__ import annotations

import math
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import AugmentConfig
from ..preprocess import ImageReadError, read_image
from ..runtime import dist as rdist
from ..runtime.cpu import usable_cpus
from ..runtime.memory import available_memory
from .records import DatasetError, DatasetIndex
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
        _, offsets = _plan_cache(self.records, self.input_size, self._cache_keep_ratio())
        return int(offsets[-1])

    def cache_images(self, progress: bool = False, share: bool = True,
                     cache_dir: str | Path | None = None, max_fraction: float = 0.8,
                     threads: int | None = None, workers: int = 0) -> int:
        """Decode every image once and keep it in RAM at the pipeline's resolution; returns
        the bytes of the cache (one copy).  Decoding is about half of the augmentation
        pipeline's time: it is then paid once per run instead of per sample and epoch.

        Stored: each image as the pipeline resizes it -- stretched to the input size, or
        fitted inside it keeping the ratio when ``aug.keep_ratio`` (evaluation datasets:
        stretched) -- when that is smaller than the decoded image, else the decoded image
        itself (e.g. a 640x480 COCO image for a 640x640 stretched input stays 640x480: the
        upscale is cheaper redone per sample than held in memory).  Also kept as decoded:
        keep-ratio sizes that the pipeline's resize would not map to themselves (integer
        rounding, mostly extreme aspect ratios), so that a second resize never differs.

        Same samples with and without the cache: a stored resized image is the pipeline's
        own ``cv2.resize`` of the decoded file (bit-identical) and its boxes get the same
        float32 scale factors (same expression), after which the pipeline's resize is the
        identity; a decoded one goes through the pipeline unchanged.  Read from the file as
        without the cache: mixup's partner image where it is stored resized (mixup resizes
        the full-resolution image keep-ratio itself), and files larger than the index says
        (they do not fit their planned slot; :meth:`ImageCache.summary` counts them).

        Memory check before decoding: the bytes follow exactly from the index's image sizes
        (every image's slot is planned from them and the allocation never exceeds the plan,
        so no sampling is needed); available memory is psutil's, else /proc/meminfo
        MemAvailable, lowered to the cgroup (container) limit (no check when none can be
        read).  Raises :class:`DatasetError` when the cache would take more than
        ``max_fraction`` of it, counting one copy per node when shared and one per rank on
        the node otherwise, plus one per loader worker of each rank where the workers receive
        their own copy (``workers``, see :func:`loader_cache_copies`).

        Sharing: with a ``torch.distributed`` process group (``damoyolo.train`` creates it
        before caching under torchrun), the first rank of each node decodes into a file in
        ``cache_dir`` (default /dev/shm) that the other ranks of the node map read-only when
        it is complete; the file is unlinked once every rank has mapped it (the mappings stay
        valid), so only a run killed while the cache is built leaves a
        ``damoyolo-cache-*.u8`` behind (a failed build leaves its one-line reason in
        ``damoyolo-cache-*.error``, which the waiting ranks raise).  Without a process group, with ``share=False``, or
        when cache_dir is missing or too small (Docker's default /dev/shm is 64 MB), every
        rank holds its own copy and the check counts ``LOCAL_WORLD_SIZE`` ranks.

        Call before creating the loader: forked workers read the cache without copying it
        (a private buffer copy-on-write and never written, or the shared mapping); with the
        spawn start method each worker receives a copy (of the shared file too: it is
        unlinked once mapped, so workers started later cannot map it).  threads: decoding
        threads (default: the usable cores, at most 16).  workers: the loader workers per
        rank that will read the cache (counted in the memory check).
        """
        keep = self._cache_keep_ratio()
        plan, offsets = _plan_cache(self.records, self.input_size, keep)
        total = int(offsets[-1])
        g = rdist.node_ranks()
        root = Path(cache_dir) if cache_dir is not None else Path("/dev/shm")
        shared = bool(share) and g["dist"] and g["local_world"] > 1 and _has_room(root, total)
        if g["dist"]:
            shared = all(rdist.gather_objects(shared))  # the same choice on every rank
        spawned = loader_cache_copies(workers) - 1  # per rank: copies its workers receive
        ranks = g["local_world"]
        copies = (1 if shared else ranks) + ranks * spawned
        avail, source = available_memory()
        err = None
        if avail is not None and total * copies > max_fraction * avail:
            per, hint = _gib(total), ""
            if copies > 1:
                per = _copies_text(total, ranks, spawned, shared)
                if shared or ranks == 1:  # only the workers' copies can go
                    hint = " (or fewer loader workers: --workers)"
                else:
                    hint = (f" (or give {root} room for one copy shared by the node's ranks)"
                            if g["dist"] and share else
                            " (or share=True: one copy per node)" if g["dist"] else
                            " (or initialise torch.distributed first: the node's ranks then "
                            "share one copy)")
            err = (f"train.cache_images: caching {len(self.records)} images at "
                   f"{self.input_size[0]}x{self.input_size[1]} needs about {per}, more than "
                   f"{max_fraction:.0%} of the {_gib(avail)} of available memory ({source}); "
                   f"train without it (--set train.cache_images=False), at a smaller input "
                   f"size or on a machine with more memory{hint}")
        if g["dist"]:
            errs = [e for e in rdist.gather_objects(err) if e]
            if errs:
                raise DatasetError(err or errs[0])
        elif err:
            raise DatasetError(err)

        mine = not shared or g["local"] == 0  # this process decodes
        show = progress and mine
        path = None
        if not shared:
            buf = np.empty(total, np.uint8)
            table = self._decode_into(buf, plan, offsets, keep, show, threads)
        else:
            token = rdist.broadcast_object(secrets.token_hex(6))
            # the name carries the pid of the node's decoding process: a cache that a killed
            # run left behind is found by it and removed by the next run (clean_stale_caches)
            ids = (g["node"], g["local"], os.getpid(), _pid_namespace())
            builders = {n: (pid, ns) for n, loc, pid, ns in rdist.gather_objects(ids)
                        if loc == 0}
            pid, ns = builders[g["node"]]
            path = root / f"damoyolo-cache-{token}-node{g['node']}-pid{pid}-ns{ns}.u8"
            if mine:
                clean_stale_caches(root)
            if mine:
                table = self._build_shared(path, total, plan, offsets, keep, show, threads)
            else:
                table = _wait_shared(path)
            buf = np.memmap(path, np.uint8, "r", shape=(total,)) if total else \
                np.empty(0, np.uint8)
            rdist.gather_objects(None)  # every rank of the node has mapped the file
            if mine:
                for f in (path, _meta_path(path)):
                    f.unlink(missing_ok=True)
        self._cache = ImageCache(table, offsets, buf, self.input_size, keep,
                                 path=str(path) if path else None,
                                 shared_by=g["local_world"] if shared else 1)
        return self._cache.nbytes

    def _build_shared(self, path: Path, total: int, plan, offsets, keep, show, threads):
        tmp = path.with_name(path.name + ".tmp")
        try:
            if total:
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    try:  # reserve the space now: a full tmpfs would SIGBUS a mapping later
                        os.posix_fallocate(fd, 0, total)
                    except (AttributeError, OSError) as e:
                        if getattr(e, "errno", None) == 28:  # ENOSPC
                            raise DatasetError(f"train.cache_images: no room for "
                                               f"{_gib(total)} in {path.parent}") from None
                        os.ftruncate(fd, total)
                finally:
                    os.close(fd)
                buf = np.memmap(tmp, np.uint8, "r+", shape=(total,))
                table = self._decode_into(buf, plan, offsets, keep, show, threads)
                buf.flush()
                del buf
            else:
                tmp.touch()
                table = plan.copy()
            np.save(_meta_path(path).with_suffix(".tmp.npy"), table)
            os.replace(_meta_path(path).with_suffix(".tmp.npy"), _meta_path(path))
            os.replace(tmp, path)  # complete: the node's other ranks map it now
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            _meta_path(path).with_suffix(".tmp.npy").unlink(missing_ok=True)
            _err_path(path).write_text(" ".join(str(e).split()) or type(e).__name__)
            raise
        return table

    def _decode_into(self, buf: np.ndarray, plan: np.ndarray, offsets: np.ndarray,
                     keep: bool, progress: bool, threads: int | None) -> np.ndarray:
        """Decode every image into its slot of ``buf``; returns the table of what is stored."""
        from concurrent.futures import ThreadPoolExecutor

        table = plan.copy()
        table[:, 0] = _NOT_CACHED
        size = self.input_size

        def one(i: int) -> None:
            try:
                img = read_image(self.records[i].path)
            except ImageReadError:  # left to the loading, which skips it and says so
                table[i] = (_NOT_CACHED, 0, 0, self.records[i].height, self.records[i].width)
                return
            h0, w0 = img.shape[:2]
            kind, h, w = _plan_entry(h0, w0, size, keep)
            n = h * w * 3
            if n > offsets[i + 1] - offsets[i]:  # larger than the index said: read from disk
                table[i] = (_NOT_CACHED, 0, 0, h0, w0)
                return
            view = buf[offsets[i]:offsets[i] + n].reshape(h, w, 3)
            # exactly resize_image's call (transforms.py): the pipeline's pixels
            view[...] = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR) \
                if kind == _FIT else img
            table[i] = (kind, h, w, h0, w0)

        n_threads = max(1, int(threads or min(16, usable_cpus())))
        cv_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # the parallelism is the decoding threads
        bar = None
        if progress:
            try:
                from tqdm import tqdm
                bar = tqdm(total=len(self.records), desc="caching images", leave=False)
            except ImportError:
                pass
        try:
            with ThreadPoolExecutor(n_threads) as ex:
                for _ in ex.map(one, range(len(self.records))):
                    if bar is not None:
                        bar.update()
        finally:
            cv2.setNumThreads(cv_threads)
            if bar is not None:
                bar.close()
        return table

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


# ----------------------------------------------------------------------------- image cache

_NOT_CACHED, _FULL, _FIT = 0, 1, 2  # ImageCache.table[:, 0]: read from disk / decoded / resized


def _fit_hw(h0: int, w0: int, input_hw: tuple[int, int], keep_ratio: bool) -> tuple[int, int]:
    """The (h, w) :func:`resize_image` produces from an (h0, w0) image (same arithmetic)."""
    ih, iw = input_hw
    if keep_ratio:
        r = min(ih / h0, iw / w0)
        return max(1, int(h0 * r)), max(1, int(w0 * r))
    return ih, iw


def _plan_entry(h0: int, w0: int, input_hw: tuple[int, int], keep_ratio: bool
                ) -> tuple[int, int, int]:
    """(kind, h, w) stored for an (h0, w0) image: resized when that is smaller and the
    pipeline's resize maps the resized size to itself, else the decoded image."""
    fh, fw = _fit_hw(h0, w0, input_hw, keep_ratio)
    if fh * fw < h0 * w0 and _fit_hw(fh, fw, input_hw, keep_ratio) == (fh, fw):
        return _FIT, fh, fw
    return _FULL, h0, w0


def _plan_cache(records, input_hw: tuple[int, int], keep_ratio: bool
                ) -> tuple[np.ndarray, np.ndarray]:
    """Planned table int64 (n, 5) ``kind, h, w, h0, w0`` from the index's image sizes, and
    byte offsets int64 (n + 1,) of every image's slot in the flat buffer."""
    table = np.zeros((len(records), 5), np.int64)
    for k, r in enumerate(records):
        table[k] = (*_plan_entry(int(r.height), int(r.width), input_hw, keep_ratio),
                    r.height, r.width)
    offsets = np.zeros(len(records) + 1, np.int64)
    np.cumsum(table[:, 1] * table[:, 2] * 3, out=offsets[1:])
    return table, offsets


class ImageCache:
    """Decoded images in one flat uint8 buffer (private, or a node-shared file mapping).

    ``table[i] = (kind, h, w, h0, w0)``: kind 0 -- not cached (read from the file), 1 --
    the decoded image (h0 x w0 = h x w), 2 -- resized to (h, w) as the pipeline does for
    ``input_size`` / ``keep_ratio``; (h0, w0) is the decoded file's size.  Image ``i`` is
    ``buf[offsets[i]:offsets[i] + h*w*3]`` as (h, w, 3) RGB.
    """

    def __init__(self, table: np.ndarray, offsets: np.ndarray, buf: np.ndarray,
                 input_size: tuple[int, int], keep_ratio: bool, path: str | None = None,
                 shared_by: int = 1) -> None:
        self.table, self.offsets, self.buf = table, offsets, buf
        self.input_size, self.keep_ratio = tuple(input_size), bool(keep_ratio)
        self.path, self.shared_by = path, int(shared_by)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> np.ndarray | None:
        """The stored image ``i`` (read-only view; None when not cached)."""
        hit = self.get(i)
        return None if hit is None else hit[0]

    @property
    def nbytes(self) -> int:
        return int(self.offsets[-1])

    def matches(self, input_size: tuple[int, int], keep_ratio: bool) -> bool:
        """Whether the resized entries are the pipeline's for this input size / resize."""
        return tuple(input_size) == self.input_size and bool(keep_ratio) == self.keep_ratio

    def get(self, i: int, resized_ok: bool = True
            ) -> tuple[np.ndarray, bool, tuple[int, int]] | None:
        """(read-only view of the image, whether it is resized, decoded (h0, w0)), or None
        when image ``i`` is not cached (or only resized and ``resized_ok`` is False)."""
        kind, h, w, h0, w0 = (int(v) for v in self.table[i])
        if kind == _NOT_CACHED or (kind == _FIT and not resized_ok):
            return None
        o = int(self.offsets[i])
        return self.buf[o:o + h * w * 3].reshape(h, w, 3), kind == _FIT, (h0, w0)

    def summary(self) -> str:
        kinds = self.table[:, 0]
        where = (f"one copy shared by the node's {self.shared_by} ranks" if self.shared_by > 1
                 else "in this process")
        return (f"image cache: {len(self)} images, {_gib(self.nbytes)} ({where}): "
                f"{int((kinds == _FIT).sum())} at the {self.input_size[0]}x{self.input_size[1]} "
                f"input resolution, {int((kinds == _FULL).sum())} at their decoded size "
                f"(not larger), {int((kinds == _NOT_CACHED).sum())} read from disk")

    def __getstate__(self) -> dict:  # spawn-started workers: re-map the file while it exists
        st = self.__dict__.copy()
        if self.path is not None and os.path.exists(self.path):
            st["buf"] = None
        else:
            st["buf"] = np.asarray(self.buf)
        return st

    def __setstate__(self, st: dict) -> None:
        self.__dict__.update(st)
        if self.buf is None:
            self.buf = np.memmap(self.path, np.uint8, "r", shape=(self.nbytes,))


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"


def _copies_text(one: int, ranks: int, spawned: int, shared: bool = False) -> str:
    """The memory of an image cache of ``one`` bytes held by ``ranks`` processes of a node
    (one copy between them when ``shared``) whose loaders' spawned workers receive
    ``spawned`` copies per rank, e.g. ``1.00 GiB per copy x 3 copies on this node (1 rank +
    2 spawned loader workers) = 3.00 GiB``."""
    copies = (1 if shared else ranks) + ranks * spawned
    if copies == 1:
        return _gib(one)
    parts = [f"one shared by the node's {ranks} ranks" if shared else
             f"{ranks} rank{'s' * (ranks > 1)}"]
    if spawned:
        parts.append(f"{ranks * spawned} spawned loader worker{'s' * (ranks * spawned > 1)}")
    return (f"{_gib(one)} per copy x {copies} copies on this node ({' + '.join(parts)}) = "
            f"{_gib(one * copies)}")


_CACHE_NAME = re.compile(r"^damoyolo-cache-[0-9a-f]+-node\d+-pid(\d+)(?:-ns(\d+))?\.u8")


def _pid_namespace() -> int:
    """The id of this process's PID namespace (0 when unknown): containers sharing
    ``/dev/shm`` (``--ipc=host``) see each other's files but not each other's processes."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def clean_stale_caches(root: str | Path) -> list[Path]:
    """Remove the shared image caches (and their metadata, temporary and error files) that
    processes no longer running left in ``root`` (a run killed while it built or held one);
    returns what was removed.  Only files made in this process's PID namespace are judged:
    a process id from another container says nothing here."""
    from ..outputs import process_alive
    removed = []
    try:
        entries = list(Path(root).iterdir())
    except OSError:
        return removed
    here = _pid_namespace()
    for f in entries:
        m = _CACHE_NAME.match(f.name)
        if m and m.group(2) is not None and int(m.group(2)) != here:
            continue  # another container's: its process ids are not ours to judge
        if m and not process_alive(int(m.group(1))):
            try:
                f.unlink()
                removed.append(f)
            except OSError:
                pass
    return removed


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.npy")


def _err_path(path: Path) -> Path:
    return path.with_name(path.name + ".error")


def _has_room(root: Path, nbytes: int) -> bool:
    """``root`` is a writable folder with ``nbytes`` free (plus 64 MiB)."""
    try:
        st = os.statvfs(root)
    except (OSError, AttributeError):
        return False
    return os.access(root, os.W_OK) and st.f_bavail * st.f_frsize >= nbytes + 2**26


def _wait_shared(path: Path, poll_s: float = 0.2) -> np.ndarray:
    """Wait for the node's first rank to finish the cache file; returns its table.

    No timeout: if that rank dies, the launcher (torchrun) stops the others."""
    while True:
        if _err_path(path).exists():
            raise DatasetError(f"train.cache_images failed on the node's first rank: "
                               f"{_err_path(path).read_text().strip()}")
        if path.exists():  # renamed into place after its table: complete
            return np.load(_meta_path(path))
        time.sleep(poll_s)


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


def max_loader_workers() -> int:
    """Most loader workers per process: the usable cores divided by the processes of this
    node (``LOCAL_WORLD_SIZE``, set by torchrun), at least 1."""
    return max(1, usable_cpus() // rdist.local_world_size())


def build_loader(dataset: Dataset, batch_size: int, workers: int = 0, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False, sampler: Sampler | None = None
                 ) -> SeededLoader:
    """A multi-worker loader deterministic for a given seed (and any worker count).

    ``workers`` is an upper bound: it is lowered to :func:`max_loader_workers` -- the usable
    cores (``os.sched_getaffinity``, else ``os.cpu_count()``) divided by the ranks on this
    node (``LOCAL_WORLD_SIZE`` under torchrun), at least 1 -- so the default of 4 never
    oversubscribes a small machine or a node shared by several ranks (samples do not depend
    on the worker count).  No core is held back for the main process: it mostly waits --
    for the accelerator or for the workers -- and the usual caps (YOLOv5 / ultralytics) are
    the same cores-per-rank figure.  ``workers=0`` loads in this process.

    ``sampler`` (e.g. a ``DistributedSampler``) replaces the built-in :class:`EpochSampler`;
    its ``set_epoch`` is called by ``loader.set_epoch``.  With ``workers > 0`` OpenCV is set to
    one thread in this process (its thread pool deadlocks forked workers).
    """
    workers = min(int(workers), max_loader_workers()) if workers > 0 else 0
    if sampler is None:
        sampler = EpochSampler(len(dataset), seed=seed, shuffle=shuffle)
    if workers > 0:
        # OpenCV's thread pool does not survive fork(): forked workers deadlock in cv2 calls
        # once the parent has used it.  One cv2 thread per process (workers do the parallelism).
        cv2.setNumThreads(1)
    return SeededLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        collate_fn=collate, drop_last=drop_last, worker_init_fn=_worker_init,
                        persistent_workers=False, pin_memory=False)


AUTO_CACHE_MAX_BYTES = 2 << 30
AUTO_CACHE_MAX_FRACTION = 0.25


def loader_cache_copies(workers: int) -> int:
    """How many copies of a private image cache a training loader with ``workers`` worker
    processes holds: 1 with the fork start method (Linux's default up to Python 3.13: the
    workers read the parent's buffer copy-on-write), ``1 + workers`` with spawn or
    forkserver (each worker receives its own copy)."""
    import multiprocessing as mp
    method = mp.get_start_method(allow_none=True) or mp.get_all_start_methods()[0]
    return 1 if workers <= 0 or method == "fork" else 1 + int(workers)


def auto_cache_fits(dataset: "DetectionDataset", world_size: int = 1,
                    max_bytes: int = AUTO_CACHE_MAX_BYTES,
                    max_fraction: float = AUTO_CACHE_MAX_FRACTION,
                    workers: int = 0) -> tuple[bool, str]:
    """Whether ``train.cache_images`` auto (``None``) caches ``dataset``, and why (one line).

    Yes for a single process when the cache takes at most ``max_bytes`` (2 GiB) and at most
    ``max_fraction`` (a quarter) of the available memory, counting every copy the loader's
    ``workers`` will hold (:func:`loader_cache_copies`): small datasets, where decoding is
    about half of the augmentation pipeline's time, at no risk to the machine.  Never under
    torchrun (``world_size > 1``: each rank would decide on its own memory figure; set
    ``train.cache_images=True`` there for the checked, node-shared cache).  The samples are
    the same with and without the cache (:meth:`DetectionDataset.cache_images`).
    """
    if world_size > 1:
        return False, "not under torchrun (set train.cache_images=True to cache)"
    one = dataset.cache_bytes()
    spawned = loader_cache_copies(workers) - 1
    need = one * (1 + spawned)
    what = _copies_text(one, 1, spawned)
    if need > max_bytes:
        return False, f"{what} is more than the {_gib(max_bytes)} auto limit"
    avail, source = available_memory()
    if avail is not None and need > max_fraction * avail:
        return False, (f"{what} is more than {max_fraction:.0%} of the {_gib(avail)} "
                       f"available ({source})")
    return True, f"{what}, within the auto limit"
