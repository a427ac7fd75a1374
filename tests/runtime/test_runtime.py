"""damoyolo.runtime: CPU counts, scoped torch threads, memory, rank / world size without a
process group (torchrun's variables), and the old import paths of the moved names."""

from __future__ import annotations

import os

import pytest
import torch

from damoyolo.runtime import cpu, dist, memory, threads


def test_torch_threads_is_scoped_and_restored():
    torch.set_num_threads(1)
    with threads.torch_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1
    with pytest.raises(ValueError):
        with threads.torch_threads(3):
            raise ValueError("inside")
    assert torch.get_num_threads() == 1
    for n in (None, 0, 1):  # nothing to change
        with threads.torch_threads(n):
            assert torch.get_num_threads() == 1
    threads.set_torch_threads(None)
    assert torch.get_num_threads() == 1
    threads.set_torch_threads(2)  # the process-wide setter (the fixture restores it)
    assert torch.get_num_threads() == 2


def test_usable_cpus(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5, 9}, raising=False)
    assert cpu.usable_cpus() == 3
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # no affinity API (macOS)
    assert cpu.usable_cpus() == 64
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert cpu.usable_cpus() == 1


def test_available_memory_reports_a_source():
    n, source = memory.available_memory()
    assert n is None or n > 0
    assert source in ("psutil", "/proc/meminfo MemAvailable", "cgroup memory limit", "unknown")


@pytest.fixture
def no_torchrun(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert not dist.is_distributed()
    return monkeypatch


def test_rank_and_world_without_a_process_group(no_torchrun):
    mp = no_torchrun
    assert (dist.rank(), dist.world_size(), dist.local_rank(), dist.local_world_size()) == \
        (0, 1, 0, 1) and dist.is_main()
    # a torchrun process before it joins the group
    for k, v in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"
                 }.items():
        mp.setenv(k, v)
    assert (dist.rank(), dist.world_size(), dist.local_rank(), dist.local_world_size()) == \
        (3, 4, 1, 2) and not dist.is_main()
    assert dist.node_ranks() == {"dist": False, "local": 1, "local_world": 2, "node": 0}
    mp.setenv("WORLD_SIZE", "1")  # one process: rank 0 whatever RANK says
    assert dist.rank() == 0 and dist.is_main()
    mp.setenv("LOCAL_WORLD_SIZE", "junk")
    assert dist.local_world_size() == 1
    mp.setenv("LOCAL_WORLD_SIZE", "0")
    assert dist.local_world_size() == 1


def test_collectives_are_the_identity_without_a_process_group(no_torchrun):
    t = torch.tensor([1.0, 2.0])
    assert dist.all_reduce_sum(t) is t and dist.reduce_mean(t) is t
    assert dist.gather_objects({"a": 1}) == [{"a": 1}]
    assert dist.broadcast_object("x") == "x"
    dist.barrier()
    with dist.failures_shared():
        pass
    with pytest.raises(KeyError):  # the error itself, not RankFailed
        with dist.failures_shared():
            raise KeyError("k")


def test_old_import_paths_name_the_same_objects():
    import damoyolo._cpu as old_cpu
    import damoyolo.data.dataset as dataset
    import damoyolo.engine.distributed as old_dist
    from damoyolo.infer.backends import default_threads
    from damoyolo.losses.criterion import reduce_mean
    for name in old_dist.__all__:
        assert getattr(old_dist, name) is getattr(dist, name), name
    assert old_dist.wants_cuda is dist.wants_cuda
    assert old_cpu.torch_cpu_has is cpu.torch_cpu_has and old_cpu.is_x86 is cpu.is_x86
    assert reduce_mean is dist.reduce_mean and default_threads is cpu.usable_cpus
    assert dataset.usable_cpus is cpu.usable_cpus
    assert dataset.available_memory is memory.available_memory
