"""Crafted files end in one clear line naming the file, never a traceback or a runaway
allocation: each case goes through ``damoyolo.cli.main`` as a user's command would.

Memory: every case is bounded in the Python allocations it makes (``tracemalloc`` peak, in
this process); the cases that could make a native allocation (image decoding, model
building) run in a child process of their own, whose own peak resident memory is measured
and whose data segment is capped (``RLIMIT_DATA``), on POSIX.  (A process-wide peak such as
``ru_maxrss`` of the test process cannot fail once an earlier test has raised it.)
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from damoyolo.cli import main

torch.set_num_threads(1)


def _png(w: int, h: int) -> bytes:
    """A valid ~60-byte PNG whose header claims w x h pixels."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))


def _img(p: Path) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(p), np.zeros((32, 32, 3), np.uint8))


def _coco(d: Path, mutate) -> Path:
    _img(d / "train" / "a.jpg")
    js = {"images": [{"id": 1, "file_name": "a.jpg", "height": 32, "width": 32}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10],
                           "area": 100, "iscrowd": 0}],
          "categories": [{"id": 1, "name": "x"}]}
    mutate(js)
    (d / "annotations").mkdir(parents=True, exist_ok=True)
    (d / "annotations" / "train.json").write_text(json.dumps(js))
    return d


def _yolo(d: Path, yaml: bytes | None, label: bytes = b"0 0.5 0.5 0.2 0.2\n") -> Path:
    _img(d / "images" / "train" / "a.jpg")
    (d / "labels" / "train").mkdir(parents=True, exist_ok=True)
    (d / "labels" / "train" / "a.txt").write_bytes(label)
    if yaml is not None:
        (d / "data.yaml").write_bytes(yaml)
    return d


def _voc(d: Path, size_xml: str, filename: str = "a.jpg") -> Path:
    _img(d / "JPEGImages" / "a.jpg")
    (d / "Annotations").mkdir(parents=True, exist_ok=True)
    (d / "Annotations" / "a.xml").write_text(
        f"<annotation><filename>{filename}</filename><size>{size_xml}</size><object><name>x"
        f"</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>"
        f"</object></annotation>")
    return d


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from damoyolo import build_model, save_model
    p = tmp_path_factory.mktemp("ck") / "ok.pt"
    save_model(build_model("damoyolo-ns", class_names=["a"]), p)
    return p


def _crafted_ckpt(ckpt: Path, out: Path, edit) -> Path:
    ck = torch.load(ckpt, weights_only=True)
    ck["model_config"] = json.loads(json.dumps(ck["model_config"]))
    edit(ck)
    torch.save(ck, out)
    return out


def _set(section, key, value):
    def edit(ck):
        ck["model_config"][section][key] = value
    return edit


def _source(t: Path) -> str:
    _img(t / "imgs" / "a.jpg")
    return str(t / "imgs")


def _predict_ckpt(edit):
    def build(t, c):
        return ["predict", "--weights", str(_crafted_ckpt(c, t / "x.pt", edit)), "--source",
                _source(t), "--out", str(t / "o")], "x.pt", "err"
    return build


def _names_file_not_utf8(t, c):
    d = _yolo(t / "d", None)
    (d / "classes.txt").write_bytes(b"\xff\xfe")
    return ["data", "check", str(d)], "classes.txt", "err"


def _bomb_in_dataset(t, c):
    d = _yolo(t / "d", b"names: [a]\n")
    (d / "images" / "train" / "b.png").write_bytes(_png(100000, 100000))
    return ["data", "check", str(d)], "b.png", "warn"  # a named fault; the image is skipped


def _bomb_predict(t, c):
    (t / "b.png").write_bytes(_png(100000, 100000))
    return ["predict", "--weights", str(c), "--source", str(t / "b.png"), "--out",
            str(t / "o"), "--no-progress"], "b.png", "err"


def _gt_not_utf8(t, c):
    (t / "gt.txt").write_bytes(b"\xff\xfe1,1\n")
    return ["track", "--weights", str(c), "--source", _source(t), "--gt", str(t / "gt.txt"),
            "--out", str(t / "o"), "--no-progress"], "gt.txt", "err"


def _out_is_a_file(t, c):
    (t / "f").write_text("x")
    return ["predict", "--weights", str(c), "--source", _source(t), "--out", str(t / "f")], \
        "f", "err"


def _stats_out_is_a_folder(t, c):
    d = _yolo(t / "d", b"names: [a]\n")
    (t / "stats.png").mkdir()
    return ["data", "check", str(d), "--no-decode", "--stats", str(t / "stats.png")], \
        "stats.png", "err"


def _grid_out_is_a_folder(t, c):
    d = _yolo(t / "d", b"names: [a]\n")
    (t / "grid.png").mkdir()
    return ["data", "show", str(d), "--num", "1", "--out", str(t / "grid.png")], "grid.png", \
        "err"


def _data(builder, named, where):
    return lambda t, c: (["data", "check", str(builder(t / "d"))], named, where)


# name -> builder(tmp, ckpt) -> (argv, the file the message names, where: err / out / warn)
CASES = {
    "coco_list_image_id": _data(lambda d: _coco(d, lambda j: j["annotations"][0].update(
        image_id=[1])), "train.json", "out"),
    "coco_mapping_category_id": _data(lambda d: _coco(d, lambda j: j["annotations"][0].update(
        category_id={"a": 1})), "train.json", "out"),
    "coco_file_name_outside_root": _data(lambda d: _coco(d, lambda j: j["images"][0].update(
        file_name="../../../../etc/passwd")), "train.json", "out"),
    "yolo_names_name_to_id": _data(lambda d: _yolo(d, b"names:\n  cat: 0\n  dog: 1\n"),
                                   "data.yaml", "err"),
    "yolo_yaml_is_a_list": _data(lambda d: _yolo(d, b"- a\n- b\n"), "data.yaml", "err"),
    "yolo_yaml_is_a_scalar": _data(lambda d: _yolo(d, b"hello\n"), "data.yaml", "err"),
    "yolo_yaml_not_utf8": _data(lambda d: _yolo(d, b"names: [\xff\xfe]\n"), "data.yaml", "err"),
    "yolo_label_not_utf8": _data(lambda d: _yolo(d, b"names: [a]\n", label=b"\xff\xfe 0.5\n"),
                                 "a.txt", "err"),
    "yolo_names_file_not_utf8": _names_file_not_utf8,
    "yolo_label_nan_inf": _data(lambda d: _yolo(d, b"names: [a]\n",
                                                label=b"0 nan 0.5 0.2 inf\n"), "a.txt", "out"),
    "voc_filename_outside_root": _data(lambda d: _voc(d, "<width>32</width><height>32</height>",
                                                      "../../x.jpg"), "a.xml", "out"),
    "decompression_bomb_data_check": _bomb_in_dataset,
    "decompression_bomb_predict": _bomb_predict,
    "checkpoint_without_model": _predict_ckpt(lambda ck: (ck.pop("model"), ck.pop("ema", None))),
    "checkpoint_huge_num_classes": _predict_ckpt(_set("head", "num_classes", 10 ** 9)),
    "checkpoint_huge_channels": _predict_ckpt(_set("neck", "out_channels", [10 ** 7] * 3)),
    "checkpoint_structure_is_a_path": _predict_ckpt(_set("backbone", "structure",
                                                         "/etc/hostname")),
    "checkpoint_config_and_weights_disagree": _predict_ckpt(lambda ck: (
        ck["model_config"]["head"].update(num_classes=3), ck.update(class_names=None))),
    "checkpoint_ema_none_without_model": _predict_ckpt(lambda ck: (ck.pop("model"),
                                                                   ck.update(ema=None))),
    "checkpoint_ema_is_a_tensor": _predict_ckpt(lambda ck: ck.update(ema=torch.zeros(2))),
    "checkpoint_category_ids_a_string": _predict_ckpt(lambda ck: ck.update(category_ids="7")),
    "checkpoint_category_ids_wrong_length": _predict_ckpt(lambda ck: ck.update(
        category_ids=[1, 2, 3])),
    "gt_not_utf8": _gt_not_utf8,
    "out_names_an_existing_file": _out_is_a_file,
    "data_check_stats_cannot_be_written": _stats_out_is_a_folder,
    "data_show_grid_cannot_be_written": _grid_out_is_a_folder,
}

# the cases whose failure mode is a native allocation (a decoded image, a built model),
# which tracemalloc does not see: run alone in a child process, its own peak measured
# (about 2 s each: the others stay in this process)
NATIVE = {"decompression_bomb_data_check", "decompression_bomb_predict",
          "checkpoint_huge_num_classes", "checkpoint_huge_channels"}
PY_PEAK_MB = 256  # Python allocations of one case, in this process
CHILD_PEAK_MB = 1024  # resident peak of a whole child (interpreter, torch, OpenCV, model:
# about 250 MB on a CPU build)
CHILD_DATA_CAP = 4 << 30  # its data segment: a runaway allocation fails instead of swapping

# the child: caps its data segment, runs the code, then reports its own resident peak
# (Linux: VmHWM of this process image; ru_maxrss would carry over the parent's peak across
# fork and exec)
_CHILD = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_DATA, (CAP, CAP))
def peak_mb():
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM")) / 1024
    except OSError:
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / 2 ** 20 if sys.platform == "darwin" else r / 1024
try:
    BODY
finally:
    with open("child.peak", "w") as f:
        f.write(str(peak_mb()))
"""
_MAIN = "from damoyolo.cli import main; rc = main(sys.argv[1:])\n    sys.exit(rc)"


def _run_child(argv: list[str], cwd: Path, body: str = _MAIN) -> tuple[int, str, str, float]:
    """``body`` with ``argv`` in a fresh interpreter in ``cwd`` -> (exit status, stdout,
    stderr, that interpreter's own peak resident memory in MB)."""
    code = _CHILD.replace("CAP", str(CHILD_DATA_CAP)).replace("BODY", body)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                       cwd=cwd, env=env, timeout=300)
    peak = cwd / "child.peak"
    mb = float(peak.read_text()) if peak.is_file() else float("nan")
    peak.unlink(missing_ok=True)
    return p.returncode, p.stdout, p.stderr, mb


def _measured_alone() -> bool:
    try:
        import resource  # noqa: F401  (POSIX only)
    except ImportError:
        return False
    return True


def test_the_child_measure_sees_an_allocation(tmp_path):
    """The child's peak is its own: a 300 MB allocation shows, an empty child stays small
    whatever this process holds, and the cap stops a runaway allocation."""
    if not _measured_alone():
        pytest.skip("per-process memory is measured and capped on POSIX")
    rc, _, _, peak = _run_child([], tmp_path, "b = bytearray(300 << 20)")
    assert rc == 0 and peak >= 300
    rc, _, _, small = _run_child([], tmp_path, "pass")
    assert rc == 0 and small < 100
    rc, _, err, _ = _run_child([], tmp_path, "b = bytearray(8 << 30)")
    assert rc != 0 and "MemoryError" in err


@pytest.mark.parametrize("name", list(CASES))
def test_crafted_file_is_one_clear_line(name, tmp_path, ckpt, capsys):
    argv, named, where = CASES[name](tmp_path, ckpt)
    if name in NATIVE and _measured_alone():
        rc, out, err, peak_mb = _run_child(argv, tmp_path)
        assert peak_mb < CHILD_PEAK_MB, f"{name}: peak resident memory {peak_mb:.0f} MB"
    else:
        tracemalloc.start()
        try:
            rc = main(argv)
            peak_mb = tracemalloc.get_traced_memory()[1] / 2 ** 20
        finally:
            tracemalloc.stop()
        cap = capsys.readouterr()
        out, err = cap.out, cap.err
        assert peak_mb < PY_PEAK_MB, f"{name}: Python allocations peaked at {peak_mb:.0f} MB"
    assert rc != 0 or where == "warn", (name, out[-500:], err[-500:])
    assert "Traceback" not in err and "Traceback" not in out, (name, err[-2000:])
    if where == "err":
        lines = err.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], (name, err)
    else:  # data check: the report names the file and the fault
        assert named in out, out
        assert ("ERROR" in out) if where == "out" else ("WARNING" in out), out
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name], name  # no temporaries


def test_video_frames_over_the_pixel_limit_are_refused_before_decoding(tmp_path, ckpt, capsys):
    from damoyolo.imageheader import set_max_image_pixels
    video = tmp_path / "v.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    for _ in range(3):
        w.write(np.zeros((48, 64, 3), np.uint8))
    w.release()
    set_max_image_pixels(64 * 48 - 1)
    try:
        rc = main(["predict", "--weights", str(ckpt), "--source", str(video), "--out",
                   str(tmp_path / "o"), "--no-progress"])
    finally:
        set_max_image_pixels(None)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "v.mp4: video frames: 64x48 pixels" in err[0]
