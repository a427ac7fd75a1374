"""Commands never write over their inputs or over another run's results (docs/outputs.md)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from damoyolo.cli import main

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from damoyolo import build_model, save_model
    d = tmp_path_factory.mktemp("outs")
    ckpt = d / "m.pth"
    save_model(build_model("damoyolo-ns", class_names=["a", "b"]), ckpt)
    data = d / "yolo"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    img = np.full((64, 64, 3), 90, np.uint8)
    cv2.imwrite(str(data / "images" / "x.jpg"), img)
    (data / "labels" / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    return ckpt, data


def _predict(ckpt, source, out, *extra):
    return main(["predict", "--weights", str(ckpt), "--source", str(source), "--out", str(out),
                 "--no-progress", "--imgsz", "64", *extra])


def test_predict_refuses_its_own_source(setup, capsys):
    ckpt, data = setup
    before = (data / "images" / "x.jpg").read_bytes()
    for out, extra in ((data / "images", ["--exist-ok"]), (data, ["--exist-ok", "--save-txt",
                                                                  "--no-save-img"])):
        assert _predict(ckpt, data / "images", out, *extra) == 2
        err = capsys.readouterr().err.strip()
        assert "would overwrite or mix with the input" in err and len(err.splitlines()) == 1
    # a pattern names the same files: refused the same way, also one folder up
    for out in (data / "images", data):
        assert _predict(ckpt, str(data / "images" / "*.jpg"), out, "--exist-ok") == 2
        assert "would overwrite or mix with the input" in capsys.readouterr().err
    assert (data / "images" / "x.jpg").read_bytes() == before
    assert (data / "labels" / "x.txt").read_text() == "0 0.5 0.5 0.2 0.2\n"


def test_an_output_folder_inside_a_folder_source_is_allowed(setup, capsys):
    """A folder source is read without its subfolders: writing into one mixes nothing."""
    ckpt, data = setup
    assert _predict(ckpt, data / "images", data / "images" / "pred") == 0
    assert (data / "images" / "pred" / "x.jpg").is_file()


def test_a_failed_start_leaves_no_output_folder(setup, tmp_path, capsys):
    ckpt, data = setup
    out = tmp_path / "p"
    assert main(["predict", "--weights", str(tmp_path / "none.pt"), "--source",
                 str(data / "images"), "--out", str(out), "--no-progress"]) != 0
    assert main(["predict", "--weights", str(ckpt), "--source", str(tmp_path / "nothing"),
                 "--out", str(out), "--no-progress"]) != 0
    assert not out.exists() and not (tmp_path / "p2").exists()


def test_predict_runs_go_to_numbered_folders(setup, tmp_path, capsys):
    ckpt, data = setup
    out = tmp_path / "predict"
    assert _predict(ckpt, data / "images", out) == 0
    assert _predict(ckpt, data / "images", out) == 0
    assert "output folder: " + str(tmp_path / "predict2") in capsys.readouterr().out
    assert (out / "x.jpg").exists() and (tmp_path / "predict2" / "x.jpg").exists()
    # --exist-ok reuses the folder; predictions.jsonl keeps both runs' records
    assert _predict(ckpt, data / "images", out, "--exist-ok") == 0
    runs = [ln for ln in (out / "predictions.jsonl").read_text().splitlines() if '"run"' in ln]
    assert len(runs) == 2
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name]


def test_track_refuses_an_out_holding_its_ground_truth(setup, tmp_path, capsys):
    ckpt, data = setup
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10,5,5,1,1,1\n")
    r = main(["track", "--weights", str(ckpt), "--source", str(data / "images"), "--out",
              str(tmp_path), "--exist-ok", "--gt", str(gt), "--no-progress"])
    assert r == 2 and "input file" in capsys.readouterr().err
    assert gt.read_text() == "1,1,10,10,5,5,1,1,1\n"


def test_demo_and_synth_leave_foreign_folders_alone(tmp_path, capsys):
    user = tmp_path / "mine"
    (user / "train").mkdir(parents=True)
    (user / "train" / "keep.txt").write_text("precious")
    assert main(["demo", "--out", str(user), "--smoke"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert main(["data", "synth", str(user), "--images", "4", "--size", "64"]) == 2
    assert "not a synthetic dataset" in capsys.readouterr().err
    assert (user / "train" / "keep.txt").read_text() == "precious"
    # the demo's own folder is reset and reused; a synthetic set is rewritten in place
    assert main(["demo", "--out", str(tmp_path / "d"), "--smoke", "--model", "damoyolo-ns"]) == 0
    assert main(["demo", "--out", str(tmp_path / "d"), "--smoke", "--model", "damoyolo-ns"]) == 0
    assert main(["data", "synth", str(tmp_path / "s"), "--images", "4", "--size", "64"]) == 0
    assert main(["data", "synth", str(tmp_path / "s"), "--images", "4", "--size", "64"]) == 0


def test_val_and_bench_json_never_overwrite_their_inputs(setup, capsys):
    ckpt, data = setup
    before = ckpt.read_bytes()
    assert main(["val", "--weights", str(ckpt), "--data", str(data), "--imgsz", "64",
                 "--save-json", str(ckpt)]) == 2
    assert "--save-json file would overwrite" in capsys.readouterr().err
    assert main(["val", "--weights", str(ckpt), "--data", str(data), "--imgsz", "64",
                 "--save-json", str(data / "labels" / "x.txt")]) == 2
    assert main(["bench", "--weights", str(ckpt), "--json", str(ckpt)]) == 2
    assert ckpt.read_bytes() == before
    assert (data / "labels" / "x.txt").read_text() == "0 0.5 0.5 0.2 0.2\n"
