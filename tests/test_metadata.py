"""Export metadata: one module writes and reads it; a deployment runtime needs no exporter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from damoyolo.metadata import (MetadataError, export_metadata, read_metadata,
                               read_tensorrt_metadata, set_onnx_metadata,
                               write_tensorrt_metadata)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from damoyolo.export import export_onnx
    from damoyolo.models.factory import build_model
    d = tmp_path_factory.mktemp("meta")
    m = build_model("damoyolo-ns", class_names=["a", "b"])
    return m, export_onnx(m, d / "m.onnx", imgsz=(64, 64), simplify=False)


def test_onnx_round_trip_and_extra_keys(exported, tmp_path):
    import onnx
    m, path = exported
    meta = read_metadata(path)
    assert meta["format"] == "damoyolo-export" and meta["class_names"] == ["a", "b"]
    assert meta["input_size"] == [64, 64] and meta["mode"] == "raw" and meta["batch"] == 1
    new = export_metadata(m, (64, 96), "raw", quantization={"tool": "x"}, opset=17)
    assert new["quantization"] == {"tool": "x"} and new["input_size"] == [64, 96]
    proto = onnx.load(str(path))
    set_onnx_metadata(proto, new)
    onnx.save(proto, str(tmp_path / "q.onnx"))
    assert read_metadata(tmp_path / "q.onnx") == new
    props = {e.key: e.value for e in onnx.load(str(tmp_path / "q.onnx")).metadata_props}
    assert json.loads(props["names"]) == ["a", "b"] and json.loads(props["imgsz"]) == [64, 96]


def test_missing_metadata_names_the_file(exported, tmp_path):
    import onnx
    _, path = exported
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(MetadataError, match="bare.onnx: no damoyolo metadata"):
        read_metadata(tmp_path / "bare.onnx")
    with pytest.raises(MetadataError, match="m.engine.json: missing metadata"):
        read_metadata(tmp_path / "m.engine")


def test_tensorrt_sidecar_round_trip(tmp_path):
    import damoyolo
    from damoyolo.metadata import export_metadata
    meta = {**export_metadata(damoyolo.build_model("damoyolo-ns", class_names=["a"]), (64, 64),
                              "raw"), "tensorrt_precision": "fp16", "batch": 2}
    p = write_tensorrt_metadata(tmp_path / "m.engine", meta)
    assert p.name == "m.engine.json"
    assert read_tensorrt_metadata(tmp_path / "m.engine") == meta == read_metadata(
        tmp_path / "m.engine")


def test_running_an_export_does_not_import_the_exporter(exported):
    _, path = exported
    code = ("import sys, torch; torch.set_num_threads(1)\n"
            "from damoyolo.infer.detector import Detector\n"
            f"det = Detector({str(path)!r}, threads=1)\n"
            "assert det.class_names == ['a', 'b'], det.class_names\n"
            "det.predict_batch(torch.zeros(1, 3, 64, 64))\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('damoyolo.export'))\n"
            "assert not loaded, loaded\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert r.returncode == 0, r.stderr
