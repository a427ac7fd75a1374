"""Where the SIGCHLD crash seen on an AMX CPU can come from, checked in a real
``damoyolo train`` with loader workers.

The DataLoader installs a SIGCHLD handler, and CPython installs handlers with SA_ONSTACK: the
kernel then builds the signal frame (with the whole register state, AMX tiles included) on the
thread's alternate signal stack when it has one.  An alternate stack only exists when something
installs it: ``faulthandler`` does (``python -X faulthandler``, ``PYTHONFAULTHANDLER=1``,
pytest).  The crash was seen in the test suite, which enables faulthandler; a user's run has
no alternate stack, so the frame goes on the thread's own stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, json, signal, sys

class stack_t(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                ("ss_size", ctypes.c_size_t)]

class sigaction_t(ctypes.Structure):  # glibc x86-64 / aarch64 layout
    _fields_ = [("sa_handler", ctypes.c_void_p), ("sa_mask", ctypes.c_ulong * 16),
                ("sa_flags", ctypes.c_int), ("sa_restorer", ctypes.c_void_p)]

def state():
    libc = ctypes.CDLL(None, use_errno=True)
    st, sa = stack_t(), sigaction_t()
    assert libc.sigaltstack(None, ctypes.byref(st)) == 0
    assert libc.sigaction(signal.SIGCHLD, None, ctypes.byref(sa)) == 0
    return {"altstack": not (st.ss_flags & 2),
            "handler": sa.sa_handler not in (None, 0, 1),
            "onstack": bool(sa.sa_flags & 0x08000000)}

from damoyolo.cli import main
rc = main(sys.argv[1:])
print("PROBE " + json.dumps({"rc": rc, **state()}))
"""


def _train(tmp_path, data, name, *python_flags):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONFAULTHANDLER", None)
    args = ["train", "--model", "damoyolo-ns", "--data", str(data), "--epochs", "1",
            "--batch", "4", "--imgsz", "64", "--workers", "2", "--output",
            str(tmp_path / name), "--set", "train.tensorboard=False", "--set",
            "train.eval_interval=0"]
    out = subprocess.run([sys.executable, *python_flags, "-c", PROBE, *args], env=env,
                         capture_output=True, text=True, timeout=300)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("PROBE ")]
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads(line[0][len("PROBE "):])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc sigaction layout")
def test_a_users_train_run_has_no_alternate_signal_stack(tmp_path):
    from damoyolo.data.synthetic import synthesize
    synthesize(tmp_path / "d", images=12, seed=0, size=96, workers=1)
    plain = _train(tmp_path, tmp_path / "d", "plain")
    assert plain["rc"] == 0
    assert plain["handler"] and plain["onstack"]  # the workers' SIGCHLD handler, SA_ONSTACK
    assert not plain["altstack"]  # ...but no alternate stack: frames go on the thread stack
    # the probe sees an alternate stack when there is one (faulthandler, as under pytest)
    fh = _train(tmp_path, tmp_path / "d", "faulthandler", "-X", "faulthandler")
    assert fh["rc"] == 0 and fh["altstack"] and fh["onstack"]
