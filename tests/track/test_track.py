"""Tracking: Kalman filter, assignment, ByteTrack behaviour, MOT files, sources, CLI."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from damoyolo.track import ByteTrack, IoUTracker, TrackerError, build_tracker
from damoyolo.workflows.track import track_frames
from damoyolo.track.io import MOTWriter, read_mot_txt
from damoyolo.track.kalman import KalmanBoxFilter, xyah_to_xyxy, xyxy_to_xyah
from damoyolo.track.matching import box_iou, greedy_assignment, linear_assignment


def box(cx, cy, w=20.0, h=40.0):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def run(tracker, frames):
    """frames: list of (boxes, scores) -> list of {id: box} per frame."""
    out = []
    for b, s in frames:
        t = tracker.update(np.asarray(b, float).reshape(-1, 4), np.asarray(s, float))
        out.append({int(i): bb for i, bb in zip(t.ids, t.boxes)})
    return out


# ---------------------------------------------------------------- building blocks
def test_kalman_learns_constant_velocity():
    kf = KalmanBoxFilter()
    z = lambda t: np.array([[10 + 3 * t, 50 - 2 * t, 0.5, 40.0]])  # noqa: E731
    m, c = kf.initiate(z(0))
    for t in range(1, 30):
        m, c = kf.predict(m, c)
        m, c = kf.update(m, c, z(t))
    m, c = kf.predict(m, c)
    np.testing.assert_allclose(m[0, :4], z(30)[0], atol=0.2)
    np.testing.assert_allclose(m[0, 4:6], [3, -2], atol=0.05)
    b = np.array([[10.0, 20.0, 30.0, 60.0]])
    np.testing.assert_allclose(xyah_to_xyxy(xyxy_to_xyah(b)), b)


def test_linear_assignment_is_optimal_and_gated():
    rng = np.random.default_rng(0)
    for n, m in [(3, 4), (4, 3), (4, 4)]:
        cost = rng.random((n, m))
        mt, ur, uc = linear_assignment(cost, max_cost=1.0)
        best = min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(
            range(m), n)) if n <= m else min(sum(cost[p[j], j] for j in range(m))
                                             for p in itertools.permutations(range(n), m))
        assert cost[mt[:, 0], mt[:, 1]].sum() == pytest.approx(best)
        assert len(mt) == min(n, m) and len(ur) == n - len(mt) and len(uc) == m - len(mt)
    cost = np.array([[0.1, 0.9], [0.2, 0.95]])
    mt, ur, uc = linear_assignment(cost, max_cost=0.5)
    assert mt.tolist() == [[0, 0]] and ur.tolist() == [1] and uc.tolist() == [1]
    # greedy takes the cheapest pair first and ends with a worse total than Hungarian
    cost = np.array([[0.1, 0.2], [0.3, 0.9]])
    g, _, _ = greedy_assignment(cost, 1.0)
    h, _, _ = linear_assignment(cost, 1.0)
    assert g.tolist() == [[0, 0], [1, 1]] and sorted(h.tolist()) == [[0, 1], [1, 0]]
    assert linear_assignment(np.zeros((0, 3)), 1.0)[2].tolist() == [0, 1, 2]


def test_box_iou():
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10],
                                                        [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1.0, 1 / 3, 0.0]])


# ---------------------------------------------------------------- tracker behaviour
def test_id_survives_short_occlusion():
    frames = [([box(20 + 4 * t, 50)], [0.9]) for t in range(25)]
    for t in range(10, 16):  # six frames without the detection
        frames[t] = (np.zeros((0, 4)), [])
    res = run(ByteTrack(), frames)
    assert all(res[t] == {} for t in range(10, 16))       # nothing reported while hidden
    assert {k for r in res for k in r} == {1}             # one id before and after
    assert 1 in res[16] and 1 in res[24]
    # beyond the lost buffer the object comes back as a new track
    res = run(ByteTrack(max_lost=3), frames)
    assert sorted({k for r in res for k in r}) == [1, 2]


def test_crossing_objects_keep_ids():
    """Two objects cross; the one behind is missing for 4 frames around the crossing."""
    frames = []
    for t in range(40):
        a, b = box(20 + 4 * t, 60), box(180 - 4 * t, 64)
        dets = [a] if 18 <= t < 22 else [a, b]
        frames.append((dets, [0.9] * len(dets)))
    res = run(ByteTrack(), frames)
    first, last = res[2], res[39]
    ida = min(first, key=lambda k: first[k][0])  # leftmost at the start: moves right
    assert set(first) == set(last) == {1, 2}
    assert last[ida][0] > 150                     # the same id ended on the right
    assert {k for r in res for k in r} == {1, 2}  # no id was ever created for the crossing
    # the greedy IoU baseline (no motion model, no lost buffer) breaks an identity here
    base = run(IoUTracker(), frames)
    assert len({k for r in base for k in r}) > 2


def test_low_score_continues_but_never_starts():
    trk = ByteTrack()  # high 0.5, low 0.1, new 0.6
    frames = [([box(30 + 3 * t, 50)], [0.9 if t < 5 else 0.3]) for t in range(15)]
    res = run(trk, frames)
    assert all(list(r) == [1] for r in res)           # the 0.3 boxes kept track 1 alive
    alone = ByteTrack()
    res = run(alone, [([box(30 + 3 * t, 50), box(150, 80)], [0.3, 0.45]) for t in range(15)])
    assert all(r == {} for r in res) and alone.num_tracks == {"tentative": 0, "tracked": 0,
                                                              "lost": 0}
    # a score between high_thresh and new_track_thresh matches tracks but starts none
    res = run(ByteTrack(), [([box(90, 90)], [0.55])] * 5)
    assert all(r == {} for r in res)


def test_confirmation_and_false_positive_flicker():
    trk = ByteTrack(min_hits=3)
    res = run(trk, [([box(50, 50)], [0.9])] * 1 + [([box(50, 50), box(150, 50)], [0.9, 0.9])]
              + [([box(50, 50)], [0.9])] * 3)
    assert [sorted(r) for r in res] == [[1], [1], [1], [1], [1]]  # the one-frame box: no id
    res = run(ByteTrack(min_hits=3), [([box(50, 50)], [0.9])] * 4)
    assert [sorted(r) for r in res] == [[1]] * 4  # first frame: confirmed at once


def test_empty_frames():
    trk = ByteTrack(max_lost=5)
    t = trk.update(np.zeros((0, 4)), np.zeros(0))
    assert len(t) == 0 and t.boxes.shape == (0, 4) and t.ids.dtype == np.int64
    res = run(trk, [([box(40, 40)], [0.8])] * 3 + [(np.zeros((0, 4)), [])] * 4
              + [([box(40, 40)], [0.8])])
    # born in frame 2 (not the first frame): tentative, confirmed by its second match
    assert [list(r) for r in res] == [[]] + [[1]] * 2 + [[]] * 4 + [[1]]
    run(trk, [(np.zeros((0, 4)), [])] * 7)
    assert trk.num_tracks["lost"] == 0  # removed after max_lost frames
    base = IoUTracker()
    assert len(base.update([], [])) == 0


def test_skip_moves_time_without_losing_tracks():
    trk = ByteTrack()
    run(trk, [([box(20 + 5 * t, 50)], [0.9]) for t in range(10)])
    trk.skip()
    t = trk.update(np.array([box(20 + 5 * 11, 50)]), np.array([0.9]))
    assert t.ids.tolist() == [1] and trk.frame == 12


def test_per_class_and_settings():
    frames = [([box(50, 50)], [0.9])] * 3
    trk = ByteTrack(per_class=True)
    for lab in (0, 0, 1, 1):
        t = trk.update(np.array(frames[0][0]), np.array([0.9]), np.array([lab]))
    assert t.ids.tolist() == [2] and t.labels.tolist() == [1]  # class change: new track
    assert trk.num_tracks == {"tentative": 0, "tracked": 1, "lost": 1}
    trk = ByteTrack()
    for lab in (0, 0, 1):
        t = trk.update(np.array(frames[0][0]), np.array([0.9]), torch.tensor([lab]))
    assert t.ids.tolist() == [1] and t.labels.tolist() == [1]  # class-agnostic: same id
    with pytest.raises(TrackerError, match="high_thresh"):
        ByteTrack(hig_thresh=0.3)
    with pytest.raises(TrackerError, match="must be in"):
        ByteTrack(high_thresh=1.5)
    with pytest.raises(TrackerError, match="bytetrack"):
        build_tracker("sort")


# ---------------------------------------------------------------- files and sources
def test_mot_txt_roundtrip(tmp_path):
    trk = ByteTrack()
    p = tmp_path / "out.txt"
    with MOTWriter(p) as w:
        for f in range(1, 4):
            w.write(f, trk.update(np.array([[10.0, 20.0, 40.0, 80.0]]), np.array([0.75])))
    lines = p.read_text().splitlines()
    assert lines[0] == "1,1,10.00,20.00,30.00,60.00,0.7500,-1,-1,-1" and len(lines) == 3
    rows = read_mot_txt(p)
    assert rows.shape == (3, 10) and rows[:, 0].tolist() == [1, 2, 3]
    # closing again (explicitly inside the block, then by the block) keeps the finished file
    with MOTWriter(p) as w:
        w.write(1, trk.update(np.array([[10.0, 20.0, 40.0, 80.0]]), np.array([0.75])))
        w.close()
        w.close()
        with pytest.raises(ValueError, match="already closed"):
            w.write(2, trk.update(np.array([[10.0, 20.0, 40.0, 80.0]]), np.array([0.75])))
    assert len(p.read_text().splitlines()) == 1
    assert not [q for q in tmp_path.iterdir() if q.name.endswith(".tmp.txt")]
    bad = tmp_path / "bad.txt"
    bad.write_text("1,2,3\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        read_mot_txt(bad)


class BrightBlobDetector:
    """A detector for test videos: one box around the bright pixels of a frame."""

    class_names = ["blob"]

    def predict_arrays(self, images):
        from damoyolo import Detections
        out = []
        for im in images:
            ys, xs = np.nonzero(im.max(2) > 128)
            b = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]] if len(xs) else []
            out.append(Detections(torch.tensor(b, dtype=torch.float32).reshape(-1, 4),
                                  torch.full((len(b),), 0.9), torch.zeros(len(b),
                                                                          dtype=torch.long)))
        return out


def _video_with_corrupt_frame(path, n=12, bad=5):
    import cv2
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (96, 64))
    for i in range(n):
        im = np.zeros((64, 96, 3), np.uint8)
        im[20:40, 5 + 5 * i:20 + 5 * i] = 255
        w.write(im)
    w.release()
    data = bytearray(path.read_bytes())
    soi = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    assert len(soi) == n
    data[soi[bad]:soi[bad] + 200] = bytes(200)  # destroy that frame's JPEG header
    path.write_bytes(bytes(data))


def test_corrupt_video_frame_reported_and_skipped(tmp_path):
    v = tmp_path / "v.avi"
    _video_with_corrupt_frame(v)
    res = list(track_frames(BrightBlobDetector(), str(v)))
    assert [r.index for r in res] == list(range(12))     # frames after it are still read
    assert [r.error is not None for r in res] == [i == 5 for i in range(12)]
    assert "frame 5" in res[5].error and res[5].tracks is None
    assert all(r.tracks.ids.tolist() == [1] for r in res if r.error is None)
    assert all(r.det_ms >= 0 and r.track_ms >= 0 for r in res)


def test_image_folder_with_unreadable_file(tmp_path):
    import cv2
    for i in range(10):
        im = np.zeros((64, 96, 3), np.uint8)
        im[20:40, 5 + 5 * i:20 + 5 * i] = 255
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), im)
    (tmp_path / "006.png").write_bytes(b"not a png")
    res = list(track_frames(BrightBlobDetector(), str(tmp_path)))
    assert [r.error is not None for r in res] == [i == 6 for i in range(10)]
    assert "006.png" in res[6].error
    ids = [r.tracks.ids.tolist() for r in res if r.tracks is not None]
    assert ids == [[1]] * 9  # the motion model bridges the skipped file
    res = list(track_frames(BrightBlobDetector(), str(tmp_path), tracker="iou"))
    assert [r.tracks.ids.tolist() for r in res if r.tracks is not None] == [[1]] * 6 + [[2]] * 3


def test_track_arrays_and_synthetic_video():
    from damoyolo.track.video import synth_frames
    a = list(synth_frames(frames=40, seed=3, size=160, objects=4))
    b = list(synth_frames(frames=40, seed=3, size=160, objects=4))
    assert all(np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b))
    img, gt = a[0]
    assert img.shape == (120, 160, 3) and img.dtype == np.uint8 and len(gt) == 4
    vis = np.array([o["visibility"] for _, g in a for o in g])
    assert vis.min() < 0.4 and vis.max() == 1.0  # the pillar / other objects hide some
    for _, g in a:
        for o in g:
            x1, y1, x2, y2 = o["box"]
            assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 120
    ious = [box_iou(np.array([g[i]["box"]]), np.array([g[j]["box"]]))[0, 0]
            for _, g in a for i in range(len(g)) for j in range(i + 1, len(g))]
    assert max(ious) > 0.1  # objects overlap at some point


# ---------------------------------------------------------------- real MOT ground truth
@pytest.mark.parametrize("seq", ["TUD-Campus", "TUD-Stadtmitte"])
def test_mot15_ground_truth_with_noise(seq):
    pytest.importorskip("motmetrics")
    import motmetrics
    from pathlib import Path

    from damoyolo.track.io import mot_lines
    from damoyolo.track.metrics import evaluate_mot
    from damoyolo.track.noise import noisy_detections
    gt = read_mot_txt(Path(motmetrics.__file__).parent / "data" / seq / "gt.txt")
    dets = noisy_detections(gt, (640, 480), seed=0, drop=0.1, jitter=0.05, fp=0.05)
    n_det = sum(len(s) for _, s in dets.values())
    assert 0.9 * len(gt) < n_det < 1.05 * len(gt)  # ~10 % dropped, ~5 % added
    scores = {}
    for name, trk in (("ours", ByteTrack(max_lost=25)), ("greedy", IoUTracker())):
        rows = []
        for f in sorted(dets):
            rows += [[float(v) for v in ln.split(",")]
                     for ln in mot_lines(f, trk.update(*dets[f]))]
        scores[name] = evaluate_mot(gt, np.array(rows).reshape(-1, 10))
    assert scores["ours"]["mota"] >= 0.80 and scores["ours"]["idf1"] >= 0.80
    assert scores["ours"]["num_switches"] < scores["greedy"]["num_switches"]
    assert scores["ours"]["idf1"] > scores["greedy"]["idf1"]


# ---------------------------------------------------------------- CLI and Detector.track
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    import dataclasses

    import damoyolo
    from damoyolo.models.factory import calibrated_model
    from damoyolo.cli.demo import _scene
    from damoyolo.preprocess import preprocess_batch
    img = _scene(7, 256)[:200]
    m = calibrated_model("damoyolo-ns", preprocess_batch([img], (128, 128))[0])
    m.cfg = dataclasses.replace(m.cfg, input_size=(128, 128))
    p = tmp_path_factory.mktemp("trk") / "ns.pth"
    damoyolo.save_model(m, p)
    return p


def test_cli_track_demo_and_detector_track(ckpt, tmp_path):
    pytest.importorskip("motmetrics")
    import damoyolo
    from damoyolo.cli import main
    from damoyolo.track.io import mot_lines
    out = tmp_path / "run"
    rc = main(["track", "--weights", str(ckpt), "--source", "demo", "--demo-frames", "8",
               "--demo-size", "128", "--out", str(out), "--trails", "5", "--no-progress",
               "--classes", "0", "--max-det", "20", "--set", "min_hits=1"])
    assert rc == 0
    res = json.loads((out / "tracks.json").read_text())
    assert len(res["frames"]) == 8 and res["settings"]["min_hits"] == 1
    assert {"mota", "idf1", "num_switches"} <= set(res["metrics"])
    assert (out / "demo_tracked.mp4").stat().st_size > 0
    rows = read_mot_txt(out / "demo.txt")
    n = sum(len(f["tracks"]) for f in res["frames"])
    assert len(rows) == n > 0 and set(rows[:, 0].astype(int)) <= set(range(1, 9))
    assert res["timing"]["track_ms_mean"] > 0
    bad = tmp_path / "bad"
    assert main(["track", "--weights", str(ckpt), "--source", "demo", "--out", str(bad),
                 "--set", "nope=1"]) == 2
    assert not (bad / "demo.mp4").exists()  # settings are checked before any work
    # the Python API on the same video gives what the CLI wrote
    det = damoyolo.Detector(ckpt, conf=0.1, classes=[0], max_det=20)
    got = list(det.track(str(out / "demo.mp4"), min_hits=1, max_lost=25))
    assert [r.frame for r in got] == list(range(1, 9))
    mine = [[float(v) for v in ln.split(",")] for r in got for ln in mot_lines(r.frame,
                                                                              r.tracks)]
    np.testing.assert_allclose(np.array(mine), rows, atol=0.011)


def test_track_same_on_onnx_backend(ckpt, tmp_path):
    pytest.importorskip("onnxruntime")
    import damoyolo
    from damoyolo.export import export_onnx
    from damoyolo.track.video import write_synth_video
    info = write_synth_video(tmp_path / "v.mp4", frames=6, size=128)
    onnx = export_onnx(damoyolo.load_model(ckpt), tmp_path / "m.onnx", mode="raw")
    res = {}
    for name, w in (("torch", ckpt), ("onnx", onnx)):
        det = damoyolo.Detector(str(w), conf=0.1, classes=[0], max_det=20, threads=1)
        assert det.backend.name == ("torch" if name == "torch" else "onnxruntime")
        res[name] = [(r.tracks.ids.tolist(), r.tracks.boxes) for r in
                     det.track(info["video"], min_hits=1)]
    assert sum(len(i) for i, _ in res["torch"]) > 0
    for (ia, ba), (ib, bb) in zip(res["torch"], res["onnx"]):
        assert ia == ib
        np.testing.assert_allclose(ba, bb, atol=0.05)


def test_cli_track_video_writer_that_cannot_open_is_one_line(ckpt, tmp_path, monkeypatch,
                                                              capsys):
    import cv2

    from damoyolo.cli import main
    from damoyolo.track.video import write_synth_video
    info = write_synth_video(tmp_path / "v.avi", frames=3, size=96)

    class Closed:  # an OpenCV build without the mp4v encoder
        def __init__(self, *a, **k):
            pass

        def isOpened(self):
            return False

    monkeypatch.setattr(cv2, "VideoWriter", Closed)
    out = tmp_path / "o"
    assert main(["track", "--weights", str(ckpt), "--source", info["video"], "--out",
                 str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "v_tracked.mp4: this OpenCV cannot write mp4v video" in err[0]
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_tracker_settings_overrides_go_through_apply_overrides():
    from damoyolo.workflows.track import tracker_settings
    s = tracker_settings("bytetrack", {"high_thresh": 0.4, "low_thresh": None}, track_buffer=30,
                         fps=15.0, overrides=["min_hits=1.0", "fuse_score=false",
                                              "max_lost=9"])
    assert s == {"high_thresh": 0.4, "max_lost": 9, "min_hits": 1, "fuse_score": False}
    assert type(s["min_hits"]) is int  # typed by the field
    assert tracker_settings("bytetrack", track_buffer=30, fps=15.0)["max_lost"] == 15
    # checked together once applied: neither order of the two thresholds is refused
    assert tracker_settings("bytetrack", {"low_thresh": 0.6},
                            overrides=["high_thresh=0.7"])["high_thresh"] == 0.7
    assert tracker_settings("bytetrack", overrides=["low_thresh=0.6", "high_thresh=0.7"])
    with pytest.raises(TrackerError, match="low_thresh=0.6 is above"):
        tracker_settings("bytetrack", overrides=["low_thresh=0.6"])
    # the iou tracker: only its named settings, its own fields for --set
    assert tracker_settings("iou", {"high_thresh": 0.3, "low_thresh": 0.1}, per_class=True,
                            overrides=["match_iou=0.4"]) == {"high_thresh": 0.3,
                                                             "per_class": True,
                                                             "match_iou": 0.4}
    for bad, msg in [("max_lots=3", "unknown config key 'max_lots'. Did you mean max_lost"),
                     ("fuse_score=yes", "fuse_score: expected True/False"),
                     ("min_hits", "must look like key=value"),
                     ("high_thresh=2", r"high_thresh=2.0: must be in \[0, 1\]")]:
        with pytest.raises(TrackerError, match=msg):
            tracker_settings("bytetrack", overrides=[bad])
    with pytest.raises(TrackerError, match="IoUTrackerConfig: unknown config key 'max_lost'"):
        tracker_settings("iou", overrides=["max_lost=3"])


def test_cli_track_set_errors_are_one_line_before_any_work(ckpt, tmp_path, capsys):
    from damoyolo.cli import main
    for item, msg in [("max_lots=1", "Did you mean max_lost"),
                      ("fuse_score=maybe", "fuse_score: expected True/False"),
                      ("min_hits", "must look like key=value")]:
        out = tmp_path / "o"
        assert main(["track", "--weights", str(ckpt), "--source", "demo", "--out", str(out),
                     "--set", item]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0] and "ByteTrackConfig" in err[0], err
        assert not out.exists()
