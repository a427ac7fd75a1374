"""damoyolo.outputs: numbered run folders, no output over an input, atomic files, stale
temporaries, one run per folder; and ``damoyolo train`` using them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from damoyolo.outputs import (OutputError, atomic_output, atomic_write_text,
                              clean_stale_temporaries, lock_run_dir, refuse_overlap, run_dir)

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def test_run_dir_numbers_folders_that_hold_results(tmp_path):
    d = tmp_path / "train"
    assert run_dir(d) == d  # absent
    d.mkdir()
    assert run_dir(d) == d  # empty
    (d / "last.pt").write_text("x")
    assert run_dir(d) == tmp_path / "train2"
    (tmp_path / "train2").mkdir()
    (tmp_path / "train2" / "results.csv").write_text("x")
    assert run_dir(d) == tmp_path / "train3"
    assert run_dir(d, exist_ok=True) == d
    (tmp_path / "exp7").mkdir()
    (tmp_path / "exp7" / "a").write_text("x")
    assert run_dir(tmp_path / "exp7") == tmp_path / "exp8"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="afile: exists and is a file"):
        run_dir(tmp_path / "afile")


def test_refuse_overlap(tmp_path):
    src = tmp_path / "data" / "images"
    src.mkdir(parents=True)
    img = src / "a.jpg"
    img.write_bytes(b"x")
    for out in (src, src / "sub", tmp_path / "data", tmp_path):
        with pytest.raises(OutputError, match="would overwrite or mix with the input folder"):
            refuse_overlap(out, [src])
    with pytest.raises(OutputError, match="input file"):
        refuse_overlap(img, [img])
    with pytest.raises(OutputError, match="input file"):
        refuse_overlap(src, [img])  # the source image inside the output folder
    refuse_overlap(tmp_path / "runs" / "predict", [src, img, "0", "imgs/*.jpg"])  # disjoint


def test_atomic_output_replaces_or_leaves_the_old_file(tmp_path):
    p = tmp_path / "out.json"
    atomic_write_text(p, "old")
    with pytest.raises(RuntimeError):
        with atomic_output(p) as tmp:
            assert tmp.parent == p.parent and tmp.suffix == ".json" and tmp != p
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert p.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["out.json"]
    with atomic_output(p) as tmp:
        tmp.write_text("new")
    assert p.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["out.json"]


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".last.pt.{dead}.abc123.tmp.pt"
    stale.write_bytes(b"half a checkpoint")
    mine = tmp_path / f".best.pt.{os.getpid()}.xyz.tmp.pt"
    mine.write_bytes(b"being written")
    other = tmp_path / ".keep.tmp"
    other.write_bytes(b"not ours")
    assert clean_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and mine.exists() and other.exists()
    assert run_dir(tmp_path / "x") == tmp_path / "x"


def test_a_second_run_in_a_locked_folder_stops(tmp_path):
    code = ("import sys; from damoyolo.outputs import lock_run_dir, OutputError\n"
            "try:\n lock_run_dir(sys.argv[1]).acquire()\nexcept OutputError as e:\n"
            " print(e); sys.exit(3)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with lock_run_dir(tmp_path / "run"):
        r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")],
                           capture_output=True, text=True, env=env)
        assert r.returncode == 3
        assert "another damoyolo run is writing into this folder" in r.stdout
        assert f"process {os.getpid()}" in r.stdout
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0  # released with the holder


def test_train_never_overwrites_an_earlier_run_and_resume_continues_in_place(tmp_path,
                                                                             monkeypatch):
    import damoyolo
    from damoyolo.data import synthesize
    synthesize(tmp_path / "d", images=6, size=64, seed=1)
    monkeypatch.chdir(tmp_path)
    sets = ["train.eval_interval=0", "train.tensorboard=False", "train.precise_bn=0"]
    kw = dict(model="damoyolo-ns", data=tmp_path / "d", batch=4, imgsz=64, device="cpu",
              workers=0, overrides=sets, progress=False)
    damoyolo.train(epochs=1, **kw)
    first = (tmp_path / "runs" / "train" / "last.pt").read_bytes()
    damoyolo.train(epochs=1, **kw)  # the default folder again: a new one
    assert (tmp_path / "runs" / "train" / "last.pt").read_bytes() == first
    assert (tmp_path / "runs" / "train2" / "last.pt").exists()
    # --resume X/last.pt continues in X, advancing X/last.pt and its results.csv
    damoyolo.train(epochs=2, resume=tmp_path / "runs" / "train" / "last.pt", **kw)
    ck = torch.load(tmp_path / "runs" / "train" / "last.pt", weights_only=True)
    assert ck["epoch"] == 1 and not (tmp_path / "runs" / "train3").exists()
    rows = (tmp_path / "runs" / "train" / "results.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    damoyolo.train(epochs=1, output=tmp_path / "runs" / "train", exist_ok=True, **kw)
    assert torch.load(tmp_path / "runs" / "train" / "last.pt", weights_only=True)["epoch"] == 0


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_atomic_files_get_the_usual_permissions(tmp_path, mask, monkeypatch):
    old = os.umask(mask)
    try:
        calls = []
        real = os.umask
        monkeypatch.setattr(os, "umask", lambda m: calls.append(m) or real(m))
        atomic_write_text(tmp_path / "a.json", "{}")
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask
        assert calls == []  # read, never set for a moment (other threads make files too)
    finally:
        os.umask(old)


def test_dot_and_concurrent_claims(tmp_path, monkeypatch):
    from damoyolo.outputs import claim_run_dir
    work = tmp_path / "work"
    work.mkdir()
    (work / "x").write_text("x")
    monkeypatch.chdir(work)
    assert run_dir(".") == tmp_path / "work2"
    a = claim_run_dir(tmp_path / "runs" / "train")
    b = claim_run_dir(tmp_path / "runs" / "train")  # started together: not the same folder
    assert (a, b) == (tmp_path / "runs" / "train", tmp_path / "runs" / "train2")
    assert claim_run_dir(tmp_path / "runs" / "train", exist_ok=True) == a


def test_predictions_of_a_reused_folder_read_as_the_last_run(tmp_path):
    import json

    from damoyolo.infer.results import read_predictions
    rows = [{"type": "run", "n": 1}, {"type": "image", "image": "a"}, {"type": "summary", "k": 1},
            {"type": "run", "n": 2}, {"type": "image", "image": "b"}, {"type": "summary", "k": 2}]
    p = tmp_path / "predictions.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    head, body, summary = read_predictions(p)
    assert head["n"] == 2 and [r["image"] for r in body] == ["b"] and summary["k"] == 2


def test_a_train_that_fails_before_training_leaves_no_run_folder(tmp_path, capsys):
    from damoyolo.cli import main
    runs = tmp_path / "runs"
    for _ in range(2):
        assert main(["train", "--data", str(tmp_path / "nowhere"), "--output",
                     str(runs / "train")]) != 0
    assert not runs.exists()
