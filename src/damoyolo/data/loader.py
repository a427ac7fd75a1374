"""Batches: ``collate``, the per-rank :class:`EpochSampler` and a loader deterministic for a
given seed and any worker count (:func:`build_loader`), with the worker counts it may use.

Determinism: the sampler's order is a function of (seed, epoch) only, and every sample draws
its randomness from its own seed (:class:`~damoyolo.data.dataset.DetectionDataset`), so the
batches do not depend on the worker that produced them or on the worker count.
"""

from __future__ import annotations

import math

import cv2
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..runtime import dist as rdist
from ..runtime.cpu import usable_cpus
from ..runtime.threads import set_torch_threads

__all__ = ["collate", "EpochSampler", "SeededLoader", "build_loader", "max_loader_workers",
           "loader_cache_copies"]


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
    set_torch_threads(1)


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


def loader_cache_copies(workers: int) -> int:
    """How many copies of a private image cache a training loader with ``workers`` worker
    processes holds: 1 with the fork start method (Linux's default up to Python 3.13: the
    workers read the parent's buffer copy-on-write), ``1 + workers`` with spawn or
    forkserver (each worker receives its own copy)."""
    import multiprocessing as mp
    method = mp.get_start_method(allow_none=True) or mp.get_all_start_methods()[0]
    return 1 if workers <= 0 or method == "fork" else 1 + int(workers)
