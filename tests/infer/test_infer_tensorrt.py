"""The TensorRT runtime is deployment code: opening an engine never imports the exporter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

_PROBE = textwrap.dedent("""
    import json, sys, types
    import torch
    fake = sys.argv[1] == "fake"
    if fake:  # a stand-in tensorrt and a visible "GPU": the constructor goes on to the files
        sys.modules["tensorrt"] = types.SimpleNamespace(__version__="10.13.0")
        torch.cuda.is_available = lambda: True
    else:  # tensorrt absent, whatever this machine has
        sys.modules["tensorrt"] = None
    from damoyolo.errors import DamoyoloError
    from damoyolo.infer.backends import BackendError, TensorRTBackend
    try:
        TensorRTBackend(sys.argv[2], trust_engine=sys.argv[3] == "trust")
        err = None
    except DamoyoloError as e:
        err = {"type": type(e).__name__, "backend": isinstance(e, BackendError), "msg": str(e)}
    print(json.dumps({"err": err,
                      "export": sorted(m for m in sys.modules if m.startswith("damoyolo.export"))}))
""")


def _probe(mode, path, trust="trust"):
    out = subprocess.run([sys.executable, "-c", _PROBE, mode, str(path), trust],
                         capture_output=True,
                         text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_missing_tensorrt_is_one_line_backend_error_without_exporter(tmp_path):
    r = _probe("missing", tmp_path / "m.engine")
    assert r["export"] == []
    assert r["err"]["backend"], r
    msg = r["err"]["msg"]
    assert "\n" not in msg and "tensorrt" in msg and "pip install tensorrt" in msg


def test_engine_path_checked_without_exporter(tmp_path):
    """With tensorrt and a GPU present the constructor reads the engine's metadata next;
    that path too stays clear of damoyolo.export."""
    r = _probe("fake", tmp_path / "absent.engine")
    assert r["export"] == []
    assert r["err"] is not None and "absent.engine" in r["err"]["msg"], r


def test_an_engine_loads_only_when_trusted(tmp_path):
    """An engine is native code: without trust_engine it is refused before anything is read
    or imported (also where tensorrt is installed)."""
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not read")
    for mode in ("fake", "missing"):
        r = _probe(mode, engine, trust="no")
        msg = r["err"]["msg"]
        assert r["err"]["backend"] and "--trust-engine" in msg and "untrusted" in msg, r
        assert "\n" not in msg


def test_cli_refuses_an_untrusted_engine(tmp_path, capsys):
    from damoyolo.cli import main
    import cv2
    import numpy as np
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.jpg"), np.zeros((32, 32, 3), np.uint8))
    for cmd in (["predict", "--source", str(tmp_path / "imgs"), "--out",
                 str(tmp_path / "out")], ["bench"]):
        assert main([cmd[0], "--weights", str(engine), *cmd[1:]]) == 2
        assert "--trust-engine" in capsys.readouterr().err


def test_documented_engine_examples_pass_the_trust_switch():
    """Every example that loads a TensorRT engine says so (an untrusted one is refused):
    ``Detector("x.engine", ..., trust_engine=True)`` and ``--weights x.engine ...
    --trust-engine``, in the user guide and the package docstring."""
    import re
    from pathlib import Path

    import damoyolo
    root = Path(__file__).resolve().parents[2]
    texts = {"damoyolo.__doc__": damoyolo.__doc__}
    for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        if p.is_file():
            texts[p.name] = p.read_text(encoding="utf-8")
    seen = 0
    for name, text in texts.items():
        # a Detector call (to its closing parenthesis) or a command line naming an engine
        for m in re.finditer(r"Detector\(\s*[\"'][^\"']*\.engine[\"'][^)]*\)", text):
            seen += 1
            assert "trust_engine=True" in m.group(0), (name, m.group(0))
        for m in re.finditer(r"^.*--weights\s+\S+\.engine\b.*$", text, re.M):
            seen += 1
            assert "--trust-engine" in m.group(0), (name, m.group(0))
        for m in re.finditer(r"^.*\bmodel\.engine\b.*$", text, re.M):
            line = m.group(0)
            if "Detector(" in line or "--weights" in line or "or model" in line:
                assert "trust" in line or "trust" in text[m.end():m.end() + 120], (name, line)
    assert seen >= 2
