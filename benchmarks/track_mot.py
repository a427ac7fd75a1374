"""Tracking benchmark on real MOT15 ground truth (TUD-Campus, TUD-Stadtmitte).

    python benchmarks/track_mot.py [--seeds 5] [--drop 0.1 --jitter 0.05 --fp 0.05]

The ground truth ships with ``motmetrics`` (package data, no download).  Detections are made
from it by the seeded noise model of :mod:`damoyolo.track.noise` (dropped boxes, box jitter,
false positives, score noise, identities removed); ByteTrack and the greedy IoU-only baseline
track the same detections, and ``motmetrics`` scores both (MOTA, IDF1, ID switches; IoU 0.5).
Figures are means over ``--seeds`` noise seeds.  Then the tracker's own time per frame is
measured at ``--timing-dets`` detections per frame (synthetic moving boxes, 1 thread).

With ``--weights`` (a model trained on the synthetic shapes, e.g. by
``benchmarks/train_synth.py``) it also tracks end to end on ``--videos`` synthetic videos
(:mod:`damoyolo.track.video`, seeds from ``--video-seed``): the model's detections, tracked by
ByteTrack with its defaults, by ByteTrack with ``--tuned`` settings, and by the greedy
baseline, scored against the videos' ground truth (visibility < 0.4 ignored).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

SEQUENCES = {"TUD-Campus": (640, 480), "TUD-Stadtmitte": (640, 480)}  # image (w, h)


def gt_path(seq: str) -> Path:
    import motmetrics
    return Path(motmetrics.__file__).parent / "data" / seq / "gt.txt"


def run_tracker(tracker, dets: dict) -> np.ndarray:
    from damoyolo.track.io import mot_lines
    rows = []
    for f in sorted(dets):
        b, s = dets[f]
        t = tracker.update(b, s)
        rows += [[float(v) for v in ln.split(",")] for ln in mot_lines(f, t)]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 10)


def timing(n_dets: int, frames: int, seed: int = 0) -> dict:
    """ms per frame of ByteTrack.update and IoUTracker.update at ``n_dets`` boxes/frame."""
    from damoyolo.track import ByteTrack, IoUTracker
    rng = np.random.default_rng(seed)
    W, H = 1920, 1080
    pos = rng.uniform([0, 0], [W - 80, H - 160], (n_dets, 2))
    vel = rng.normal(0, 3, (n_dets, 2))
    wh = rng.uniform([30, 60], [80, 160], (n_dets, 2))
    seq = []
    for _ in range(frames):
        pos = pos + vel
        b = np.concatenate([pos, pos + wh], 1) + rng.normal(0, 1.5, (n_dets, 4))
        s = rng.uniform(0.05, 1.0, n_dets)
        seq.append((b, s))
    out = {}
    for name, tr in (("bytetrack", ByteTrack()), ("iou", IoUTracker())):
        ts, cpu = [], []
        for b, s in seq:
            t0, c0 = time.perf_counter(), time.thread_time()
            tr.update(b, s)
            ts.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
        ts, cpu = np.asarray(ts[10:]) * 1e3, np.asarray(cpu[10:]) * 1e3
        out[name] = {"mean_ms": float(ts.mean()), "median_ms": float(np.median(ts)),
                     "p95_ms": float(np.percentile(ts, 95)), "cpu_mean_ms": float(cpu.mean())}
    return out


def end_to_end(args) -> list[str]:
    """MOTA / IDF1 of the model + trackers on synthetic videos with ground truth."""
    import ast
    import tempfile

    import torch

    import damoyolo
    from damoyolo.track import ByteTrack, IoUTracker
    from damoyolo.track.io import read_mot_txt
    from damoyolo.track.metrics import evaluate_mot
    from damoyolo.track.video import MIN_VISIBILITY, write_synth_video
    from damoyolo.workflows.track import iter_frames
    torch.set_num_threads(1)
    tuned = {k: ast.literal_eval(v) for k, v in
             (kv.split("=") for kv in args.tuned.split(",") if kv)}
    det = damoyolo.Detector(args.weights, conf=0.1, threads=1)
    makers = {"ByteTrack (defaults)": lambda: ByteTrack(max_lost=25),
              f"ByteTrack ({args.tuned})": lambda: ByteTrack(max_lost=25, **tuned),
              "greedy IoU": lambda: IoUTracker()}
    keys = ["mota", "idf1", "num_switches", "num_false_positives", "num_misses"]
    res = {k: [] for k in makers}
    det_ms, trk_ms = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for v in range(args.videos):
            info = write_synth_video(Path(tmp) / f"v{v}.mp4", frames=args.video_frames,
                                     seed=args.video_seed + v)
            gt = read_mot_txt(info["gt"])
            frames = [f.image for f in iter_frames(info["video"])]
            t0 = time.perf_counter()
            dets = det.predict_arrays(frames)
            det_ms.append((time.perf_counter() - t0) * 1e3 / len(frames))
            for name, make in makers.items():
                tr, rows = make(), []
                for i, d in enumerate(dets):
                    t1 = time.perf_counter()
                    t = tr.update(d.boxes, d.scores, d.labels)
                    if name == "ByteTrack (defaults)":
                        trk_ms.append((time.perf_counter() - t1) * 1e3)
                    rows += [[i + 1, k, b[0], b[1], b[2] - b[0], b[3] - b[1], s, -1, -1, -1]
                             for k, b, s in zip(t.ids.tolist(), t.boxes.tolist(),
                                                t.scores.tolist())]
                m = evaluate_mot(gt, np.asarray(rows).reshape(-1, 10),
                                 min_visibility=MIN_VISIBILITY)
                res[name].append([m[k] for k in keys])
    out = [f"End to end on {args.videos} synthetic videos (seeds {args.video_seed}.."
           f"{args.video_seed + args.videos - 1}, {args.video_frames} frames, 320x240, 8 "
           f"objects), model {Path(args.weights).name}, detector conf 0.1, 1 thread:", "",
           "| tracker | MOTA | IDF1 | ID switches | FP | FN |", "|---|---|---|---|---|---|"]
    for name, v in res.items():
        mo, i1, sw, fp, fn = np.mean(v, 0)
        out.append(f"| {name} | {mo:.3f} | {i1:.3f} | {sw:.1f} | {fp:.1f} | {fn:.1f} |")
    out.append("")
    out.append(f"Per frame: detection {np.mean(det_ms):.1f} ms, ByteTrack "
               f"{np.median(trk_ms):.3f} ms median / {np.mean(trk_ms):.3f} ms mean "
               f"(detections with score >= 0.1 as input)")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--drop", type=float, default=0.10)
    p.add_argument("--jitter", type=float, default=0.05)
    p.add_argument("--fp", type=float, default=0.05)
    p.add_argument("--timing-dets", type=int, default=50)
    p.add_argument("--timing-frames", type=int, default=1000)
    p.add_argument("--out", default=None, help="also write the table (markdown) here")
    p.add_argument("--weights", default=None, help="model for the end-to-end synthetic run")
    p.add_argument("--videos", type=int, default=3)
    p.add_argument("--video-seed", type=int, default=10)
    p.add_argument("--video-frames", type=int, default=150)
    p.add_argument("--tuned", default="low_thresh=0.3,new_track_thresh=0.5,low_match_iou=0.7,birth_max_iou=0.5",
                   help="ByteTrack settings of the 'tuned' row (KEY=VALUE,...)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from damoyolo.track import ByteTrack, IoUTracker
    from damoyolo.track.io import read_mot_txt
    from damoyolo.track.matching import assignment_backend
    from damoyolo.track.metrics import evaluate_mot
    from damoyolo.track.noise import noisy_detections

    keys = ["mota", "idf1", "num_switches", "num_false_positives", "num_misses"]
    lines = ["| sequence | tracker | MOTA | IDF1 | ID switches | FP | FN |",
             "|---|---|---|---|---|---|---|"]
    verdict = []
    for seq, wh in SEQUENCES.items():
        gt = read_mot_txt(gt_path(seq))
        res = {"bytetrack": [], "iou": []}
        for seed in range(args.seeds):
            dets = noisy_detections(gt, wh, seed=seed, drop=args.drop, jitter=args.jitter,
                                    fp=args.fp)
            for name, tr in (("bytetrack", ByteTrack(max_lost=25)), ("iou", IoUTracker())):
                m = evaluate_mot(gt, run_tracker(tr, dets), name=seq)
                res[name].append([m[k] for k in keys])
        means = {k: np.mean(v, 0) for k, v in res.items()}
        for name in ("bytetrack", "iou"):
            mo, i1, sw, fp, fn = means[name]
            lines.append(f"| {seq} | {'ours (ByteTrack)' if name == 'bytetrack' else 'greedy IoU'}"
                         f" | {mo:.3f} | {i1:.3f} | {sw:.1f} | {fp:.1f} | {fn:.1f} |")
        ok = (means["bytetrack"][0] >= 0.8 and means["bytetrack"][1] >= 0.8
              and means["bytetrack"][2] < means["iou"][2])
        verdict.append(f"{seq}: {'met' if ok else 'missed'}")
    tm = timing(args.timing_dets, args.timing_frames)
    lines.append("")
    lines.append(f"Tracker time per frame at {args.timing_dets} detections "
                 f"({args.timing_frames} frames, assignment: {assignment_backend()}, "
                 f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}):")
    for name, t in tm.items():
        lines.append(f"- {name}: wall clock mean {t['mean_ms']:.3f} ms, median "
                     f"{t['median_ms']:.3f} ms, p95 {t['p95_ms']:.3f} ms; CPU time mean "
                     f"{t['cpu_mean_ms']:.3f} ms")
    lines.append("")
    lines.append(f"Goal (MOTA >= 0.80, IDF1 >= 0.80, fewer ID switches than greedy IoU): "
                 f"{'; '.join(verdict)}; overhead <= 1 ms: "
                 f"{'met' if tm['bytetrack']['median_ms'] <= 1.0 else 'missed'} (median wall clock)")
    cmd = "python benchmarks/track_mot.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines.append(f"\nCommand: `{cmd.strip()}`; noise: drop {args.drop}, jitter {args.jitter}, "
                 f"false positives {args.fp}; means over {args.seeds} seeds.")
    if args.weights:
        lines += ["", *end_to_end(args)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
