from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

# the shared helpers (engine_standin.py) live beside this file; the tests in the
# sub-folders (one per package folder) import them by name
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OFFICIAL = SHARED / "official"


def shared_path(*parts: str) -> Path:
    """A file of the reference data beside the checkout; skips the test when absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference data {p.relative_to(ROOT.parent)} not present")
    return p


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread in every test (a test or library call that changes it is undone)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _default_sigchld(request):
    """Put SIGCHLD back to its default after a test that installed a handler (torch's
    DataLoader does, for its worker processes).  On CPUs with AMX the kernel cannot always
    deliver a signal into a handler's alternate stack once AMX state is live, and kills the
    process with SIGSEGV instead, which here struck a later test waiting on a subprocess."""
    import signal
    yield
    if signal.getsignal(signal.SIGCHLD) not in (signal.SIG_DFL, None):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
