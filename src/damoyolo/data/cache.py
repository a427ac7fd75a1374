"""The image cache: every image decoded once and held in RAM at the resolution the sample
pipeline resizes it to, checked against the available memory first and shared by the ranks
of a node (:func:`build_image_cache`, :class:`ImageCache`; used by
:meth:`DetectionDataset.cache_images <damoyolo.data.dataset.DetectionDataset.cache_images>`),
and the automatic choice of ``train.cache_images`` (:func:`auto_cache_fits`).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

import cv2
import numpy as np

from ..preprocess import ImageReadError, read_image
from ..runtime import dist as rdist
from ..runtime.cpu import usable_cpus
from ..runtime.memory import available_memory
from .loader import loader_cache_copies
from .records import DatasetError

__all__ = ["ImageCache", "build_image_cache", "planned_bytes", "clean_stale_caches",
           "auto_cache_fits", "AUTO_CACHE_MAX_BYTES", "AUTO_CACHE_MAX_FRACTION"]


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


def planned_bytes(records, input_size: tuple[int, int], keep_ratio: bool) -> int:
    """Bytes of one copy of the cache :func:`build_image_cache` would build for ``records``
    (planned exactly from the index's image sizes; nothing is decoded)."""
    return int(_plan_cache(records, input_size, keep_ratio)[1][-1])


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


def build_image_cache(records, input_size: tuple[int, int], keep_ratio: bool,
                      progress: bool = False, share: bool = True,
                      cache_dir: str | Path | None = None, max_fraction: float = 0.8,
                      threads: int | None = None, workers: int = 0) -> ImageCache:
    """Decode every image of ``records`` once and keep it in RAM at the pipeline's
    resolution for ``input_size`` (h, w) and ``keep_ratio`` (the resize every load goes
    through); the cache of :meth:`DetectionDataset.cache_images
    <damoyolo.data.dataset.DetectionDataset.cache_images>`.  Decoding is about half of the
    augmentation pipeline's time: it is then paid once per run instead of per sample and
    epoch.

    Stored: each image as the pipeline resizes it -- stretched to the input size, or
    fitted inside it keeping the ratio when ``keep_ratio`` -- when that is smaller than the
    decoded image, else the decoded image itself (e.g. a 640x480 COCO image for a 640x640
    stretched input stays 640x480: the upscale is cheaper redone per sample than held in
    memory).  Also kept as decoded:
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
    their own copy (``workers``, see :func:`~damoyolo.data.loader.loader_cache_copies`).

    Sharing: with a ``torch.distributed`` process group (``damoyolo.train`` creates it
    before caching under torchrun), the first rank of each node decodes into a file in
    ``cache_dir`` (default /dev/shm) that the other ranks of the node map read-only when
    it is complete; the file is unlinked once every rank has mapped it (the mappings stay
    valid), so only a run killed while the cache is built leaves a
    ``damoyolo-cache-*.u8`` behind (a failed build leaves its one-line reason in
    ``damoyolo-cache-*.error``, which the waiting ranks raise).  Without a process group,
    with ``share=False``, or when cache_dir is missing or too small (Docker's default
    /dev/shm is 64 MB), every rank holds its own copy and the check counts
    ``LOCAL_WORLD_SIZE`` ranks.

    Call before creating the loader: forked workers read the cache without copying it
    (a private buffer copy-on-write and never written, or the shared mapping); with the
    spawn start method each worker receives a copy (of the shared file too: it is
    unlinked once mapped, so workers started later cannot map it).  threads: decoding
    threads (default: the usable cores, at most 16).  workers: the loader workers per
    rank that will read the cache (counted in the memory check).
    """
    keep = bool(keep_ratio)
    plan, offsets = _plan_cache(records, input_size, keep)
    total = int(offsets[-1])
    g = rdist.node_ranks()
    root = Path(cache_dir) if cache_dir is not None else Path("/dev/shm")
    shared = bool(share) and g["dist"] and g["local_world"] > 1 and _has_room(root, total)
    if g["dist"]:
        shared = all(rdist.gather_objects(shared))  # the same choice on every rank
    err = _memory_refusal(len(records), input_size, total, g, shared, share, root,
                          max_fraction, workers)
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
        table = _decode_into(records, input_size, buf, plan, offsets, keep, show, threads)
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
            table = _build_shared(records, input_size, path, total, plan, offsets, keep, show,
                                  threads)
        else:
            table = _wait_shared(path)
        buf = np.memmap(path, np.uint8, "r", shape=(total,)) if total else \
            np.empty(0, np.uint8)
        rdist.gather_objects(None)  # every rank of the node has mapped the file
        if mine:
            for f in (path, _meta_path(path)):
                f.unlink(missing_ok=True)
    return ImageCache(table, offsets, buf, input_size, keep,
                      path=str(path) if path else None,
                      shared_by=g["local_world"] if shared else 1)


def _memory_refusal(n_images: int, input_size: tuple[int, int], total: int, g: dict,
                    shared: bool, share: bool, root: Path, max_fraction: float, workers: int
                    ) -> str | None:
    """Why a cache of ``total`` bytes per copy does not fit in ``max_fraction`` of the
    available memory (one line), counting the copies the node's ranks (``g``:
    :func:`~damoyolo.runtime.dist.node_ranks`) and their spawned loader workers hold; None
    when it fits or the available memory is unknown."""
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
        err = (f"train.cache_images: caching {n_images} images at "
               f"{input_size[0]}x{input_size[1]} needs about {per}, more than "
               f"{max_fraction:.0%} of the {_gib(avail)} of available memory ({source}); "
               f"train without it (--set train.cache_images=False), at a smaller input "
               f"size or on a machine with more memory{hint}")
    return err


def _build_shared(records, input_size, path: Path, total: int, plan, offsets, keep, show,
                  threads):
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
            table = _decode_into(records, input_size, buf, plan, offsets, keep, show, threads)
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


def _decode_into(records, input_size: tuple[int, int], buf: np.ndarray, plan: np.ndarray,
                 offsets: np.ndarray, keep: bool, progress: bool, threads: int | None
                 ) -> np.ndarray:
    """Decode every image into its slot of ``buf``; returns the table of what is stored."""
    from concurrent.futures import ThreadPoolExecutor

    table = plan.copy()
    table[:, 0] = _NOT_CACHED
    size = input_size

    def one(i: int) -> None:
        try:
            img = read_image(records[i].path)
        except ImageReadError:  # left to the loading, which skips it and says so
            table[i] = (_NOT_CACHED, 0, 0, records[i].height, records[i].width)
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
            bar = tqdm(total=len(records), desc="caching images", leave=False)
        except ImportError:
            pass
    try:
        with ThreadPoolExecutor(n_threads) as ex:
            for _ in ex.map(one, range(len(records))):
                if bar is not None:
                    bar.update()
    finally:
        cv2.setNumThreads(cv_threads)
        if bar is not None:
            bar.close()
    return table


AUTO_CACHE_MAX_BYTES = 2 << 30
AUTO_CACHE_MAX_FRACTION = 0.25


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
