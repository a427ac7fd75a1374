"""keep_freed_memory (damoyolo.engine.cpu_memory): freed large blocks stay in the heap."""

from __future__ import annotations

import subprocess
import sys

import pytest

from damoyolo.config import TrainConfig

_PROBE = r"""
import ctypes, sys
import numpy as np

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    from damoyolo.engine.cpu_memory import keep_freed_memory
    assert keep_freed_memory() and keep_freed_memory()
a = np.ones(64 << 20, np.uint8)      # 64 MB: above glibc's default mmap threshold cap
mapped = libc.mallinfo2().hblkhd     # bytes in mmap'ed blocks while it is alive
del a
kept = libc.mallinfo2().fordblks     # free bytes kept in the heap after the free
print(mapped >= 64 << 20, kept >= 64 << 20)
"""


def _probe(mode: str) -> str:
    r = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_freed_blocks_are_kept_for_reuse():
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018
    except (OSError, AttributeError):
        pytest.skip("needs glibc >= 2.33 (mallinfo2)")
    assert _probe("default") == "True False"  # glibc's default: mmap'ed, returned on free
    assert _probe("keep") == "False True"     # kept: from the heap, and kept after free


def test_trainer_setting_defaults_on():
    assert TrainConfig().keep_freed_memory is True
