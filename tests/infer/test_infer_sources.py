"""One list of image suffixes (datasets and predict) and one suffix -> backend table."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest

from damoyolo.data.readers import load_yolo
from damoyolo.infer.backends import BACKENDS, SUFFIXES, BackendError, backend_for_path, is_export
from damoyolo.infer.sources import open_source
from damoyolo.preprocess import IMAGE_SUFFIXES


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp", ".tif", ".webp", ".pgm", ".ppm"])
def test_dataset_reader_and_predict_accept_the_same_images(tmp_path, suffix):
    img = np.full((20, 30, 3), 90, np.uint8)
    if suffix == ".pgm":
        img = img[:, :, 0]
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    assert cv2.imwrite(str(tmp_path / "images" / f"a{suffix}"), img)
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "classes.txt").write_text("thing\n")
    idx = load_yolo(tmp_path)
    src = open_source(str(tmp_path / "images"))
    assert [Path(r.path).suffix for r in idx.records] == [suffix]
    assert [Path(f).suffix for f in src.files] == [suffix]
    assert suffix in IMAGE_SUFFIXES


def test_a_suffix_outside_the_list_is_neither_a_dataset_image_nor_a_predict_input(tmp_path):
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "images" / "notes.gif").write_bytes(b"GIF89a")
    (tmp_path / "classes.txt").write_text("thing\n")
    assert len(load_yolo(tmp_path).records) == 1
    assert len(open_source(str(tmp_path / "images"))) == 1


def test_backend_table():
    assert set(SUFFIXES.values()) == set(BACKENDS)
    assert backend_for_path("m.ONNX") == "onnxruntime" and backend_for_path("m.xml") == "openvino"
    assert backend_for_path("ckpt.bin", default="torch") == "torch"
    with pytest.raises(BackendError, match="cannot tell the backend"):
        backend_for_path("ckpt.bin")
    assert is_export("m.engine") and not is_export("last.pt") and not is_export("ckpt.bin")


@pytest.mark.parametrize("command", ["predict", "val", "bench", "track"])
def test_backend_choices_come_from_the_registry(command):
    import importlib
    mod = importlib.import_module(f"damoyolo.cli.{command}")
    p = argparse.ArgumentParser()
    mod.add_arguments(p)
    (action,) = [a for a in p._actions if a.dest == "backend"]
    assert list(action.choices) == list(BACKENDS)
