"""An export and its metadata stay a matching pair; crafted metadata is one clear error;
an export never replaces its own input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from damoyolo import build_model, save_model
from damoyolo.cli import main
from damoyolo.metadata import MetadataError, read_metadata, read_tensorrt_metadata

torch.set_num_threads(1)
onnx = pytest.importorskip("onnx")


def _model(seed):
    torch.manual_seed(seed)
    return build_model("damoyolo-ns", class_names=["a", "b"])


def test_openvino_xml_and_bin_of_different_exports_do_not_load(tmp_path):
    pytest.importorskip("openvino")
    from damoyolo.export import export_openvino
    a = export_openvino(_model(0), tmp_path / "a.xml", imgsz=(64, 64))
    b = export_openvino(_model(1), tmp_path / "b.xml", imgsz=(64, 64))
    assert read_metadata(a)["weights_sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.xml", "b.bin", "b.xml"]
    shutil.copy(b.with_suffix(".bin"), a.with_suffix(".bin"))  # a half-replaced pair
    with pytest.raises(MetadataError, match=r"a\.bin: does not belong to .*a\.xml"):
        read_metadata(a)
    from damoyolo import Detector
    with pytest.raises(MetadataError, match="export the model again"):
        Detector(str(a))


def _onnx_with_meta(tmp_path, value):
    from damoyolo.export import export_onnx
    p = export_onnx(_model(0), tmp_path / "m.onnx", imgsz=(64, 64), simplify=False)
    m = onnx.load(str(p))
    for e in m.metadata_props:
        if e.key == "damoyolo":
            e.value = value
    out = tmp_path / "crafted.onnx"
    out.write_bytes(m.SerializeToString())
    return out, json.loads(next(e.value for e in onnx.load(str(p)).metadata_props
                                if e.key == "damoyolo"))


def test_crafted_onnx_metadata_is_one_clear_error(tmp_path):
    p, good = _onnx_with_meta(tmp_path, "{not json")
    with pytest.raises(MetadataError, match="crafted.onnx: damoyolo metadata is not valid JSON"):
        read_metadata(p)
    for bad, msg in (({k: v for k, v in good.items() if k != "input_size"}, "lacks 'input_size'"),
                     ({**good, "class_names": {"a": 0}}, "'class_names' is dict"),
                     ({**good, "input_size": [64, -1]}, "input_size"),
                     ([1, 2], "JSON list, not an object")):
        p.write_bytes(b"")
        p, _ = _onnx_with_meta(tmp_path, json.dumps(bad))
        with pytest.raises(MetadataError, match=msg):
            read_metadata(p)
    (tmp_path / "garbage.onnx").write_bytes(b"\x00\xffnot a protobuf" * 10)
    with pytest.raises(MetadataError, match="garbage.onnx: not a readable ONNX file"):
        read_metadata(tmp_path / "garbage.onnx")


def test_tensorrt_sidecar_checked_against_its_engine(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine bytes")
    side = tmp_path / "m.engine.json"
    side.write_text("not json")
    with pytest.raises(MetadataError, match="m.engine.json: damoyolo metadata is not valid JSON"):
        read_tensorrt_metadata(engine)
    from damoyolo.metadata import export_metadata, file_sha256
    meta = export_metadata(_model(0), (64, 64), "raw")
    side.write_text(json.dumps({**meta, "engine_sha256": file_sha256(engine)}))
    assert read_tensorrt_metadata(engine)["class_names"] == ["a", "b"]
    engine.write_bytes(b"another engine")  # a newer engine beside the old metadata
    with pytest.raises(MetadataError, match="does not belong"):
        read_tensorrt_metadata(engine)


def test_export_never_replaces_its_input(tmp_path, capsys):
    ck = tmp_path / "best.pt"
    save_model(_model(0), ck)
    before = ck.read_bytes()
    assert main(["export", "--weights", str(ck), "--format", "onnx", "--out", str(ck)]) == 2
    assert "would overwrite" in capsys.readouterr().err and ck.read_bytes() == before


def _external(t) -> None:
    t.data_location = onnx.TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", "../../../../etc/passwd"


def _sparse_initializer(m):
    sp = m.graph.sparse_initializer.add()
    sp.dims.extend([4])
    sp.values.CopyFrom(onnx.numpy_helper.from_array(np.ones(1, np.float32), "sp"))
    sp.indices.CopyFrom(onnx.numpy_helper.from_array(np.zeros(1, np.int64), "sp_i"))
    _external(sp.values)


def _constant_node(m):
    t = onnx.numpy_helper.from_array(np.ones(1, np.float32), "c")
    _external(t)
    m.graph.node.append(onnx.helper.make_node("Constant", [], ["c_out"], value=t))


def _sparse_constant_node(m):
    sp = onnx.SparseTensorProto()
    sp.dims.extend([4])
    sp.values.CopyFrom(onnx.numpy_helper.from_array(np.ones(1, np.float32), "v"))
    sp.indices.CopyFrom(onnx.numpy_helper.from_array(np.zeros(1, np.int64), "i"))
    _external(sp.values)
    m.graph.node.append(onnx.helper.make_node("Constant", [], ["s_out"], sparse_value=sp))


def _function_constant(m):
    t = onnx.numpy_helper.from_array(np.ones(1, np.float32), "f")
    _external(t)
    f = onnx.helper.make_function("custom", "F", [], ["y"],
                                  [onnx.helper.make_node("Constant", [], ["y"], value=t)],
                                  [onnx.helper.make_opsetid("", 17)])
    m.functions.append(f)


@pytest.mark.parametrize("where", ["initializer", "sparse_initializer", "constant",
                                   "sparse_constant", "function"])
def test_onnx_with_external_data_is_refused(tmp_path, where):
    """Wherever a tensor can keep its data in an external file, the file is refused before
    any runtime reads it (runtimes have missed some of these places)."""
    from damoyolo.export import export_onnx
    p = export_onnx(_model(0), tmp_path / "m.onnx", imgsz=(64, 64), simplify=False)
    m = onnx.load(str(p))
    {"initializer": lambda m: _external(m.graph.initializer[0]),
     "sparse_initializer": _sparse_initializer, "constant": _constant_node,
     "sparse_constant": _sparse_constant_node, "function": _function_constant}[where](m)
    out = tmp_path / "ext.onnx"
    out.write_bytes(m.SerializeToString())
    with pytest.raises(MetadataError, match="ext.onnx: the ONNX file refers to external data"):
        read_metadata(out)


def test_openvino_backend_checks_an_onnx_file_before_reading_it(tmp_path, monkeypatch):
    """OpenVINO's ONNX reader follows external-data references: the refusal comes first."""
    ov = pytest.importorskip("openvino")
    from damoyolo.export import export_onnx
    from damoyolo.infer.backends import OpenVINOBackend
    p = export_onnx(_model(0), tmp_path / "m.onnx", imgsz=(64, 64), simplify=False)
    m = onnx.load(str(p))
    _external(m.graph.initializer[0])
    out = tmp_path / "ext.onnx"
    out.write_bytes(m.SerializeToString())
    reads = []

    class Core(ov.Core):
        def read_model(self, *a, **k):
            reads.append(a)
            return super().read_model(*a, **k)

    monkeypatch.setattr(ov, "Core", Core)
    with pytest.raises(MetadataError, match="external data"):
        OpenVINOBackend(out)
    assert reads == []
    OpenVINOBackend(p)  # a plain export still loads, through the same reader
    assert len(reads) == 1


def test_an_onnxruntime_that_follows_external_data_out_of_the_folder_is_refused(tmp_path,
                                                                                monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    from damoyolo.export import export_onnx
    from damoyolo.infer.backends import BackendError, OnnxRuntimeBackend, check_safe_onnxruntime
    for v in ("1.16.3", "1.23.2", "1.26.0"):
        with pytest.raises(BackendError, match=f"onnxruntime {v} can read files outside"):
            check_safe_onnxruntime(v)
    for v in ("1.27.0", "1.32.0", "2.0.1"):
        check_safe_onnxruntime(v)
    p = export_onnx(_model(0), tmp_path / "m.onnx", imgsz=(64, 64), simplify=False)
    monkeypatch.setattr(ort, "__version__", "1.20.1")
    with pytest.raises(BackendError, match="install onnxruntime >= 1.27"):
        OnnxRuntimeBackend(p)
