"""torch's CPU (intra-op) thread count: for the whole process, or for a block only."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["set_torch_threads", "torch_threads"]


def set_torch_threads(n: int | None) -> None:
    """Set torch's thread count for the whole process (``None`` or 0: leave it).  It stays
    until set again: prefer :func:`torch_threads` where a block is enough."""
    if n:
        torch.set_num_threads(int(n))


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with torch's thread count at ``n``, then restore the count it had
    before (also when the block raises).  ``None`` or 0 leaves the count as it is; so does
    ``n`` equal to the current count (nothing is set)."""
    if not n:
        yield
        return
    before = torch.get_num_threads()
    if int(n) == before:
        yield
        return
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
