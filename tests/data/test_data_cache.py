"""train.cache_images: the cache holds images at the pipeline's resolution, gives the same
samples as reading the files, refuses up front when memory is short (counting the node's
ranks), works with forked workers and is shared by the ranks of a node."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import damoyolo.data.cache as cmod
from damoyolo.config import AugmentConfig
from damoyolo.data import DatasetError, DatasetIndex, DetectionDataset, Record, build_loader
from damoyolo.preprocess import read_image

ROOT = Path(__file__).resolve().parents[2]
INPUT = (64, 96)  # (h, w)

# (file h, file w, declared h, declared w): larger than the input (stored resized), smaller
# (stored as decoded), exactly the input, a keep-ratio size that the resize does not map to
# itself (stored as decoded), declared sizes differing from the file both ways
SIZES = [(120, 200, 120, 200), (150, 90, 150, 90), (40, 50, 40, 50), (64, 96, 64, 96),
         (20, 147, 20, 147), (100, 160, 80, 128), (90, 120, 130, 170), (100, 160, 40, 50),
         (200, 130, 200, 130)]


def make_index(folder: Path, sizes=SIZES, seed: int = 0) -> DatasetIndex:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for k, (fh, fw, dh, dw) in enumerate(sizes):
        img = rng.integers(0, 256, (fh, fw, 3), dtype=np.uint8)
        img = cv2.GaussianBlur(img, (5, 5), 0)  # some structure for the interpolation
        p = folder / f"{k}.png"
        cv2.imwrite(str(p), img)
        n = int(rng.integers(1, 4)) if k != 2 else 0  # one negative image
        x1 = rng.uniform(0, dw * 0.6, n)
        y1 = rng.uniform(0, dh * 0.6, n)
        boxes = np.stack([x1, y1, x1 + rng.uniform(4, dw * 0.4, n),
                          y1 + rng.uniform(4, dh * 0.4, n)], 1) if n else np.zeros((0, 4))
        records.append(Record(str(p), boxes, rng.integers(0, 3, n), k + 1, dh, dw))
    return DatasetIndex(records, ["a", "b", "c"], [1, 2, 3], str(folder), "coco")


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> DatasetIndex:
    return make_index(tmp_path_factory.mktemp("imgs"))


def _same(a: DetectionDataset, b: DetectionDataset, epochs=(0, 1, 2)) -> None:
    for e in epochs:
        for strong in ((True, False) if a.train else (False,)):
            for d in (a, b):
                d.set_epoch(e)
                d.set_strong_augment(strong)
            for i in range(len(a)):
                (x, tx), (y, ty) = a[i], b[i]
                assert torch.equal(x, y), (e, strong, i)
                assert torch.equal(tx["boxes"], ty["boxes"]), (e, strong, i)
                assert torch.equal(tx["labels"], ty["labels"]), (e, strong, i)
                assert tx["orig_size"] == ty["orig_size"]


@pytest.mark.parametrize("keep_ratio", [False, True])
@pytest.mark.parametrize("train", [True, False])
def test_cached_samples_equal_uncached(index, keep_ratio, train):
    aug = AugmentConfig(keep_ratio=keep_ratio, mixup_prob=0.5, mosaic_prob=0.7)
    plain = DetectionDataset(index, INPUT, train=train, aug=aug, seed=3)
    cached = DetectionDataset(index, INPUT, train=train, aug=aug, seed=3)
    cached.cache_images()
    kinds = cached.image_cache.table[:, 0].tolist()
    # every kind of entry is exercised: resized, decoded size, not cached (file larger
    # than declared, so it does not fit its slot)
    assert {0, 1, 2} <= set(kinds), kinds
    _same(plain, cached)


def test_cache_holds_the_pipeline_resolution(index):
    aug = AugmentConfig(keep_ratio=False)
    ds = DetectionDataset(index, INPUT, train=True, aug=aug)
    nbytes = ds.cache_images()
    c = ds.image_cache
    full = sum(h * w * 3 for h, w, _, _ in SIZES)
    assert nbytes == c.buf.nbytes < full
    img, resized, hw0 = c.get(0)
    assert resized and img.shape == (*INPUT, 3) and hw0 == (120, 200)
    img, resized, hw0 = c.get(2)  # 40x50: smaller than the input, kept as decoded
    assert not resized and img.shape == (40, 50, 3)
    assert c.get(0, resized_ok=False) is None  # mixup reads the full-resolution file
    # a resized entry is exactly the pipeline's resize of the decoded file
    ref = cv2.resize(read_image(index.records[0].path), INPUT[::-1],
                     interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(c.get(0)[0], ref)
    assert "read from disk" in c.summary()


def test_refuses_before_decoding_when_memory_is_short(index, monkeypatch):
    calls = []
    monkeypatch.setattr(cmod, "read_image", lambda p: calls.append(p) or 1 / 0)
    need = int(cmod._plan_cache(index.records, INPUT, False)[1][-1])
    ds = DetectionDataset(index, INPUT, train=True, aug=AugmentConfig(keep_ratio=False))
    monkeypatch.setattr(cmod, "available_memory", lambda: (need, "MemAvailable"))
    with pytest.raises(DatasetError) as e:  # 100% > 80% of what is available
        ds.cache_images()
    msg = str(e.value)
    assert "\n" not in msg and "MemAvailable" in msg and "cache_images=False" in msg
    assert "MiB" in msg and calls == [] and ds.image_cache is None

    # 4 ranks on the node, each with its own copy (no process group): 4x the bytes counted
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setattr(cmod, "available_memory", lambda: (2 * need, "psutil"))
    with pytest.raises(DatasetError, match=r"x 4 copies on this node \(4 ranks\)"):
        ds.cache_images()
    assert calls == []
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")

    # spawned loader workers each receive a copy: counted; forked ones share the parent's
    import multiprocessing
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: "spawn")
    with pytest.raises(DatasetError) as e:  # 3 copies > 80% of 2x
        ds.cache_images(workers=2)
    msg = str(e.value)
    assert "x 3 copies on this node (1 rank + 2 spawned loader workers)" in msg, msg
    assert "--workers" in msg and calls == [] and ds.image_cache is None
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: "fork")
    monkeypatch.setattr(cmod, "read_image", _real_read_image)
    ds.cache_images(workers=2)  # one copy (forked workers) fits in 2x its size
    assert ds.image_cache.nbytes == need


_real_read_image = cmod.read_image


def test_available_memory_reports_a_source():
    from damoyolo.data.dataset import available_memory  # the old path keeps working
    n, source = available_memory()
    assert n is None or n > 0
    assert source in ("psutil", "/proc/meminfo MemAvailable", "cgroup memory limit", "unknown")


def test_forked_workers_and_pickling(index):
    aug = AugmentConfig(keep_ratio=True)
    plain = DetectionDataset(index, INPUT, train=True, aug=aug, seed=1)
    cached = DetectionDataset(index, INPUT, train=True, aug=aug, seed=1)
    cached.cache_images()
    a = list(build_loader(plain, batch_size=3, workers=0, seed=5, shuffle=True))
    b = list(build_loader(cached, batch_size=3, workers=2, seed=5, shuffle=True))
    assert len(a) == len(b)
    for (xa, ta), (xb, tb) in zip(a, b):
        assert torch.equal(xa, xb)
        assert all(torch.equal(p["boxes"], q["boxes"]) for p, q in zip(ta, tb))
    again = pickle.loads(pickle.dumps(cached))  # spawn-started workers get a copy
    _same(plain, again, epochs=(0,))


RANK_SCRIPT = r"""
import json, os, pickle, sys
import torch.distributed as dist
import damoyolo.data.cache as cmod
from damoyolo.config import AugmentConfig
from damoyolo.data import DatasetError, DetectionDataset
dist.init_process_group("gloo")
calls = []
real = cmod.read_image
cmod.read_image = lambda p: calls.append(p) or real(p)
index = pickle.loads(open(sys.argv[2], "rb").read())
INPUT = tuple(json.loads(sys.argv[1]))
aug = AugmentConfig(keep_ratio=False, mixup_prob=0.0)
ds = DetectionDataset(index, INPUT, train=True, aug=aug, seed=2)
ds.cache_images(cache_dir=sys.argv[3])
c = ds.image_cache
decoded = len(calls)
dist.barrier()  # the first rank has removed the file once every rank mapped it
files = sorted(os.listdir(sys.argv[3]))
ds.set_epoch(1)
out = {"decoded": decoded, "shared_by": c.shared_by, "path": c.path, "files_after": files,
       "sum": [float(ds[i][0].sum()) for i in range(len(ds))],
       "boxes": [ds[i][1]["boxes"].tolist() for i in range(len(ds))]}
cmod.available_memory = lambda: (1000, "test")
try:
    DetectionDataset(index, INPUT, train=True, aug=aug).cache_images(cache_dir=sys.argv[3])
    out["refused"] = None
except DatasetError as e:
    out["refused"] = str(e)
cmod.available_memory = lambda: (None, "unknown")
if dist.get_rank() == 0:  # the building rank fails: the other rank says why, no hang
    cmod.read_image = lambda p: (_ for _ in ()).throw(ValueError(f"{p}: broken image"))
try:
    DetectionDataset(index, INPUT, train=True, aug=aug).cache_images(cache_dir=sys.argv[3])
    out["failed"] = None
except (DatasetError, ValueError) as e:
    out["failed"] = f"{type(e).__name__}: {e}"
json.dump(out, open(sys.argv[4], "w"))
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_node_ranks_share_one_copy(index, tmp_path):
    """Two ranks of one node: the first decodes into a file in cache_dir, the second maps
    it (decoding nothing); the file is gone once both mapped; same samples as no cache."""
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    (tmp_path / "index.pkl").write_bytes(pickle.dumps(index))
    shm = tmp_path / "shm"
    shm.mkdir()
    port = _free_port()
    procs = []
    for r in range(2):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(ROOT / "src"), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "WORLD_SIZE": "2", "RANK": str(r),
               "LOCAL_RANK": str(r), "LOCAL_WORLD_SIZE": "2"}
        procs.append(subprocess.Popen(
            [sys.executable, str(script), json.dumps(INPUT), str(tmp_path / "index.pkl"),
             str(shm), str(tmp_path / f"out{r}.json")], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out
    r0, r1 = (json.loads((tmp_path / f"out{r}.json").read_text()) for r in range(2))
    assert r0["decoded"] == len(SIZES) and r1["decoded"] == 0  # one rank decoded
    assert r0["shared_by"] == r1["shared_by"] == 2 and r0["path"] == r1["path"]
    assert Path(r0["path"]).parent == shm and r0["files_after"] == r1["files_after"] == []
    assert r0["sum"] == r1["sum"] and r0["boxes"] == r1["boxes"]
    plain = DetectionDataset(index, INPUT, train=True,
                             aug=AugmentConfig(keep_ratio=False, mixup_prob=0.0), seed=2)
    plain.set_epoch(1)
    assert r0["sum"] == [float(plain[i][0].sum()) for i in range(len(plain))]
    # the memory check runs on every rank, with the same verdict
    assert r0["refused"] and r1["refused"] and "available memory" in r0["refused"]
    assert r0["failed"].startswith("ValueError") and "broken image" in r0["failed"]
    assert r1["failed"].startswith("DatasetError") and "broken image" in r1["failed"]
    # nothing left in cache_dir but the failed build's one-line note
    assert [f for f in os.listdir(shm) if not f.endswith(".error")] == []
    assert "-pid" in Path(r0["path"]).name  # the decoding process's id is in the name


def test_caches_left_by_killed_runs_are_removed(tmp_path):
    from damoyolo.data.dataset import clean_stale_caches
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    ns = os.stat("/proc/self/ns/pid").st_ino if os.path.exists("/proc/self/ns/pid") else 0
    stale = [tmp_path / f"damoyolo-cache-ab12-node0-pid{dead}-ns{ns}.u8{x}"
             for x in ("", ".tmp", ".meta.npy", ".error")]
    stale.append(tmp_path / f"damoyolo-cache-ef56-node0-pid{dead}.u8")  # older name
    live = tmp_path / f"damoyolo-cache-cd34-node0-pid{os.getpid()}-ns{ns}.u8"
    # a dead-looking process id of another PID namespace (a container sharing /dev/shm)
    foreign = tmp_path / f"damoyolo-cache-9a9a-node0-pid{dead}-ns{ns + 1}.u8"
    other = tmp_path / "someone-elses.u8"
    for f in (*stale, live, foreign, other):
        f.write_bytes(b"x")
    assert sorted(clean_stale_caches(tmp_path)) == sorted(stale)
    assert live.exists() and foreign.exists() and other.exists()


def test_training_with_the_cache_is_the_same_run(tmp_path, capsys):
    """`damoyolo.train` with train.cache_images=True (forked worker): the same weights as
    without the cache."""
    import damoyolo
    from damoyolo.data.synthetic import synthesize
    synthesize(tmp_path / "d", images=10, seed=0, size=96, workers=1)
    sets = ["train.nominal_batch=4", "train.warmup_epochs=0", "train.no_aug_epochs=0",
            "train.eval_interval=0", "train.tensorboard=False", "train.seed=7"]
    finals = []
    for run, cache in (("a", False), ("b", True)):
        damoyolo.train(model="damoyolo-ns", data=tmp_path / "d", epochs=1, batch=4, imgsz=64,
                       device="cpu", workers=1, output=tmp_path / run, progress=True,
                       overrides=sets + [f"train.cache_images={cache}"])
        finals.append(torch.load(tmp_path / run / "last.pt", map_location="cpu",
                                 weights_only=False))
    assert "image cache: 8 images" in capsys.readouterr().out
    for name, v in finals[0]["model"].items():
        assert torch.equal(v, finals[1]["model"][name]), name


def test_auto_cache_decides_from_the_planned_bytes_and_the_memory(index, monkeypatch):
    """train.cache_images auto (None): a small dataset in one process is cached; over the
    byte limit, over a quarter of the available memory, or under torchrun it is not."""
    ds = DetectionDataset(index, INPUT, train=True, aug=AugmentConfig(keep_ratio=False))
    need = int(cmod._plan_cache(index.records, INPUT, False)[1][-1])
    assert ds.cache_bytes() == need > 0
    monkeypatch.setattr(cmod, "available_memory", lambda: (4 * need, "MemAvailable"))
    assert cmod.auto_cache_fits(ds)[0] is True  # exactly a quarter
    monkeypatch.setattr(cmod, "available_memory", lambda: (4 * need - 1, "MemAvailable"))
    ok, why = cmod.auto_cache_fits(ds)
    assert ok is False and "25%" in why and "MemAvailable" in why
    monkeypatch.setattr(cmod, "available_memory", lambda: (None, "unknown"))
    assert cmod.auto_cache_fits(ds)[0] is True
    ok, why = cmod.auto_cache_fits(ds, max_bytes=need - 1)
    assert ok is False and "auto limit" in why
    ok, why = cmod.auto_cache_fits(ds, world_size=2)
    assert ok is False and "torchrun" in why
    assert ds.image_cache is None  # deciding decodes nothing


def test_auto_cache_counts_the_copies_of_spawned_workers(index, monkeypatch):
    """With the spawn (or forkserver) start method every loader worker receives its own copy
    of a private cache: the auto limit counts them; forked workers share the parent's."""
    import multiprocessing
    ds = DetectionDataset(index, INPUT, train=True, aug=AugmentConfig(keep_ratio=False))
    need = ds.cache_bytes()
    monkeypatch.setattr(cmod, "available_memory", lambda: (4 * 3 * need, "MemAvailable"))
    for method, workers, copies in (("fork", 2, 1), ("spawn", 0, 1), ("spawn", 2, 3),
                                    ("forkserver", 1, 2)):
        monkeypatch.setattr(multiprocessing, "get_start_method",
                            lambda allow_none=False, m=method: m)
        assert cmod.loader_cache_copies(workers) == copies, (method, workers)
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: "spawn")
    assert cmod.auto_cache_fits(ds, workers=2)[0] is True  # 3 copies: exactly a quarter
    ok, why = cmod.auto_cache_fits(ds, workers=3)
    assert ok is False and "x 4 copies" in why and "25%" in why
    ok, why = cmod.auto_cache_fits(ds, workers=3, max_fraction=1.0, max_bytes=3 * need)
    assert ok is False and "auto limit" in why


def test_training_caches_a_small_dataset_by_default(tmp_path, capsys):
    """The default (auto) caches a small training set, and says so."""
    import damoyolo
    from damoyolo.data.synthetic import synthesize
    synthesize(tmp_path / "d", images=10, seed=0, size=96, workers=1)
    damoyolo.train(model="damoyolo-ns", data=tmp_path / "d", epochs=1, batch=4, imgsz=64,
                   device="cpu", workers=0, output=tmp_path / "r", progress=True,
                   overrides=["train.eval_interval=0", "train.tensorboard=False",
                              "train.precise_bn=0"])
    out = capsys.readouterr().out
    assert "image cache (train.cache_images auto): on" in out and "image cache: 8 images" in out
