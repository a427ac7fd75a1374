"""build_loader never starts more workers than the usable cores (per rank under torchrun)."""

from __future__ import annotations

import os

import pytest

import damoyolo.data.dataset as dsmod
from damoyolo.data import build_loader


def _loader(workers: int):
    return build_loader(list(range(10)), batch_size=2, workers=workers)


@pytest.fixture
def cores(monkeypatch):
    def set_cores(n: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    return set_cores


def test_clamped_to_usable_cores(cores):
    cores(8)
    assert _loader(16).num_workers == 8
    assert _loader(4).num_workers == 4  # the request is an upper bound only
    assert _loader(0).num_workers == 0
    cores(2)
    assert _loader(4).num_workers == 2  # TrainConfig.workers' default of 4 on 2 cores
    cores(1)
    assert _loader(4).num_workers == 1


def test_divided_by_local_world_size(cores, monkeypatch):
    cores(16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert _loader(8).num_workers == 4
    assert _loader(2).num_workers == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")  # more ranks than cores: one worker each
    assert _loader(8).num_workers == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "junk")
    assert _loader(32).num_workers == 16


def test_affinity_not_cpu_count(monkeypatch):
    """A process pinned to 3 of 64 cores (taskset, cpusets) gets 3, not 64."""
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5, 9}, raising=False)
    assert dsmod.usable_cpus() == 3 and _loader(8).num_workers == 3
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # no affinity API (macOS)
    assert dsmod.usable_cpus() == 64 and _loader(8).num_workers == 8


def test_this_machine():
    n = dsmod.usable_cpus()
    assert 1 <= n <= (os.cpu_count() or n)
    assert _loader(4).num_workers <= max(1, n // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
