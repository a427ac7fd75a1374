"""Process-group helpers: one process by default, DDP when launched by ``torchrun``."""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta

import torch
import torch.distributed as dist

from ..config import ConfigError
from ..errors import DamoyoloError

__all__ = ["init_distributed", "is_distributed", "rank", "world_size", "is_main", "barrier",
           "all_reduce_sum", "gather_objects", "cleanup", "DEFAULT_TIMEOUT_MIN",
           "failures_shared", "RankFailed"]

DEFAULT_TIMEOUT_MIN = 60.0  # train.ddp_timeout: how long a rank waits for the others


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def wants_cuda(device: str = "") -> bool:
    """Whether the ``train.device`` setting asks for CUDA ("" = when available)."""
    return device.startswith("cuda") or (device == "" and torch.cuda.is_available())


def init_distributed(device: str = "", timeout_min: float | None = None
                     ) -> tuple[torch.device, int]:
    """Join the process group when ``WORLD_SIZE`` > 1 (set by torchrun); pick the device.

    Returns (device, local_rank).  Backend: nccl on CUDA, gloo on CPU.  timeout_min: how long a
    collective waits for the other ranks (``train.ddp_timeout``, default 60 minutes: rank 0
    evaluates alone while the others wait at a barrier, and torch's own default of 10
    minutes for NCCL aborts a job whose evaluation takes longer).
    """
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = wants_cuda(device)
    if want_cuda and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    if want_cuda:
        dev = torch.device(device if ":" in device and ws == 1 else f"cuda:{local_rank}")
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if ws > 1 and not is_distributed():
        minutes = DEFAULT_TIMEOUT_MIN if timeout_min is None else float(timeout_min)
        dist.init_process_group(backend="nccl" if want_cuda else "gloo",
                                timeout=timedelta(minutes=minutes))
    return dev, local_rank


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place and returned); identity when not distributed."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_objects(obj):
    """Every rank's ``obj`` (picklable plain data), as a list in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


class RankFailed(DamoyoloError, RuntimeError):
    """Another rank of the run failed; the message is that rank's."""


_FAILURE_KEY = "damoyolo/first_failure"


@contextlib.contextmanager
def failures_shared(wait_s: float = 30.0):
    """Run the block so that an error on one rank ends every rank with the first failing
    rank's message, instead of the others waiting for it in a collective until the timeout.

    The failing rank writes ``rank R: message`` to the process group's store and ends; the
    collectives the others wait in then fail, and each of them reads the first message
    from the store and raises :class:`RankFailed` with it.  The store must outlive the
    failing process: torchrun's agent holds it (so under torchrun every rank ends with the
    first message); with other launchers rank 0 holds it, and when rank 0 is the one that
    fails the others end with their own error.  Without a process group the block runs as
    it is.
    """
    if not is_distributed():
        yield
        return
    try:
        store = dist.distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError):  # a torch without it: plain behaviour
        yield
        return
    try:
        yield
    except BaseException as e:
        mine = f"rank {rank()}: {type(e).__name__}: {e}".strip()
        first = None
        try:
            if store.add(_FAILURE_KEY + "/count", 1) == 1:  # this rank failed first
                store.set(_FAILURE_KEY, mine)
                first = mine
            else:
                store.wait([_FAILURE_KEY], timedelta(seconds=wait_s))
                first = store.get(_FAILURE_KEY).decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - the store went with the failed rank
            first = first or mine
        with contextlib.suppress(Exception):
            dist.destroy_process_group()  # the ranks still waiting on us stop waiting
        if first == mine:  # the others stop waiting when this process ends
            raise
        raise RankFailed(f"another rank failed first: {first}") from None


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
