"""This process's place in a run: rank, local rank, world size, the process group and its
collectives.  One process by default; a process group when launched by ``torchrun``.

Rank and world size come from the process group once it is initialised, else from
torchrun's environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``): a torchrun process knows its place before it joins the group.
The collectives are the identity without a process group.
"""

from __future__ import annotations

import contextlib
import os
import socket
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..config import ConfigError
from ..errors import DamoyoloError

__all__ = ["DEFAULT_TIMEOUT_MIN", "is_distributed", "rank", "world_size", "local_rank",
           "local_world_size", "is_main", "node_ranks", "wants_cuda", "init_distributed",
           "barrier", "all_reduce_sum", "reduce_mean", "gather_objects", "broadcast_object",
           "failures_shared", "RankFailed", "cleanup"]

DEFAULT_TIMEOUT_MIN = 60.0  # train.ddp_timeout: how long a rank waits for the others


def _env_int(name: str, default: int) -> int:
    """A torchrun variable as a non-negative int; ``default`` when unset, not a number, or
    0 / negative (then ``default`` too, e.g. ``LOCAL_WORLD_SIZE=0`` counts as 1)."""
    try:
        return max(int(os.environ.get(name, default)), 0) or default
    except ValueError:
        return default


def is_distributed() -> bool:
    """A process group is initialised (also one of a single process)."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes in the run: the group's size, else ``WORLD_SIZE`` (1 when unset)."""
    return dist.get_world_size() if is_distributed() else _env_int("WORLD_SIZE", 1)


def rank() -> int:
    """This process's global rank: the group's, else ``RANK`` when ``WORLD_SIZE`` > 1, else 0."""
    if is_distributed():
        return dist.get_rank()
    return _env_int("RANK", 0) if world_size() > 1 else 0


def local_rank() -> int:
    """This process's index among the processes of its node (``LOCAL_RANK``, 0 when unset)."""
    return _env_int("LOCAL_RANK", 0)


def local_world_size() -> int:
    """Processes on this node (``LOCAL_WORLD_SIZE``, 1 when unset)."""
    return _env_int("LOCAL_WORLD_SIZE", 1)


def is_main() -> bool:
    return rank() == 0


def node_ranks() -> dict:
    """This process's place among the ranks of its node: ``dist`` (a process group with
    more than one rank), ``local`` (index on the node), ``local_world`` (ranks on the node)
    and ``node`` (the node's first global rank).  With a process group the node is found by
    host name (a collective: every rank calls it); without one, from :func:`local_rank` /
    :func:`local_world_size` (torchrun's variables)."""
    if is_distributed() and dist.get_world_size() > 1:
        host = socket.gethostname()
        hosts = gather_objects(host)
        same = [k for k, h in enumerate(hosts) if h == host]
        return {"dist": True, "local": same.index(dist.get_rank()), "local_world": len(same),
                "node": same[0]}
    return {"dist": False, "local": local_rank(), "local_world": local_world_size(), "node": 0}


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
    ws = _env_int("WORLD_SIZE", 1)  # the launcher's, also when a group is already joined
    local = local_rank()
    want_cuda = wants_cuda(device)
    if want_cuda and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    if want_cuda:
        dev = torch.device(device if ":" in device and ws == 1 else f"cuda:{local}")
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if ws > 1 and not is_distributed():
        minutes = DEFAULT_TIMEOUT_MIN if timeout_min is None else float(timeout_min)
        dist.init_process_group(backend="nccl" if want_cuda else "gloo",
                                timeout=timedelta(minutes=minutes))
    return dev, local


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place and returned); identity when not distributed."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (a new tensor; ``t`` itself when not distributed).  Always issues the
    collective under a process group, so every rank takes the same path."""
    if is_distributed():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t = t / dist.get_world_size()
    return t


def gather_objects(obj: Any) -> list:
    """Every rank's ``obj`` (picklable plain data), as a list in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (picklable plain data), on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


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
