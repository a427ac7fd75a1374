"""Moved to :mod:`damoyolo.runtime.dist` (rank, world size, process group, collectives); the
names stay importable from here."""

from __future__ import annotations

from ..runtime.dist import (DEFAULT_TIMEOUT_MIN, RankFailed, all_reduce_sum, barrier,
                            cleanup, failures_shared, gather_objects, init_distributed,
                            is_distributed, is_main, rank, wants_cuda, world_size)

__all__ = ["init_distributed", "is_distributed", "rank", "world_size", "is_main", "barrier",
           "all_reduce_sum", "gather_objects", "cleanup", "DEFAULT_TIMEOUT_MIN",
           "failures_shared", "RankFailed"]
