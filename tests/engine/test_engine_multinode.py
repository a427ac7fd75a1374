"""Multi-node training as far as one machine can show it: two torchrun agents on the
loopback address (``--nnodes 2``, one process each) train and resume like a single node."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_nodes(args: list[str], tmp_path: Path) -> None:
    port = _port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank",
               str(node), "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
               "--master_port", str(port), "-m", "damoyolo", "train", *args]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, cwd=tmp_path))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for node, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"node {node}:\n{out[-3000:]}"


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_nodes_on_loopback_train_and_resume(tmp_path):
    from damoyolo.data import synthesize
    synthesize(tmp_path / "d", images=10, size=64, seed=3)
    common = ["--model", "damoyolo-ns", "--data", str(tmp_path / "d"), "--imgsz", "64",
              "--batch", "4", "--device", "cpu", "--workers", "0",
              "--set", "train.eval_interval=0", "--set", "train.tensorboard=False",
              "--set", "train.precise_bn=0"]
    _two_nodes([*common, "--epochs", "1", "--output", str(tmp_path / "run")], tmp_path)
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["epoch"] == 0 and len(ck["rng_ranks"]) == 2
    _two_nodes([*common, "--epochs", "2", "--resume", str(tmp_path / "run" / "last.pt")],
               tmp_path)
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["epoch"] == 1 and [h["epoch"] for h in ck["history"]] == [1, 2]
    assert not (tmp_path / "run2").exists()  # the resumed run continued in its folder
