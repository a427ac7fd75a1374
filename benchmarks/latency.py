"""CPU latency of every preset (batch 1, native input size): our ONNX export on
onnxruntime and on OpenVINO (f32), side by side with the official DAMO-YOLO export of the
same architecture when its file is given.

    python benchmarks/latency.py [--official-dir DIR] [--threads 2] [--runs 30] \
        [--variants raw raw_heads] [--graphs] [--json out.json]

``--official-dir`` holds official benchmark-mode ONNX files named after the official
configs (``damoyolo_tinynasL20_T.onnx``, ...; produced by the official exporter outside
this project).  Models have random weights: latency does not depend on them.

Our variants: ``raw`` (the default export: decoded ``scores``/``boxes``, decode included in
the graph) and ``raw_heads`` (``--raw-heads``: the same per-level outputs as the official
benchmark-mode export, so the same work).  For each preset and runtime, every model is
compiled, warmed up, then timed **interleaved** (ours, official, ours, official, ...) so
that load changes on a shared machine hit all of them alike; the table gives medians and
ours/official ratios.  The 1-minute load average is recorded per preset.
Achieved GFLOP/s = thop GFLOPs / median latency of ``raw``; the peak is cores x 32 fp32
FLOP/cycle (two 256-bit FMA pipes) x the clock given by ``--ghz``.

``--int8`` gives the INT8 table instead: per preset, the official-style fp32 export on
onnxruntime (the official file from ``--official-dir`` when present, else our ``raw_heads``
export, the same graph node for node) is the baseline; against it, in one interleaved run,
our fp32 ``raw`` export on OpenVINO, the OpenVINO INT8 model (NNCF, MIXED preset, float head)
and the onnxruntime INT8 QDQ models (S8S8, and U8S8 for comparison), all ``raw`` (decode in
the graph).  Calibration: ``--int8-data DATASET`` (``--int8-images`` images of its train
split), by default a small synthetic dataset generated in a temporary folder.  INT8 speed
can depend on the weights (the quantizers come from calibrated activations): ``--checkpoint
CKPT`` times a trained checkpoint at its own input size instead (calibrate it on its data
with ``--int8-data``; the official file is not used then, the sizes differ).  The table also
times the OpenVINO INT8 model exported ``raw_heads`` (the baseline's outputs, no decode in
the graph: the same work as the baseline).

Diagnostics: ``--act relu`` replaces the backbone's and neck's activation by ReLU (not a
DAMO-YOLO model: it shows what the SiLU costs); ``ONEDNN_MAX_CPU_ISA`` in the environment
(e.g. ``AVX512_CORE_VNNI`` on a CPU with AMX) caps OpenVINO's oneDNN kernels for the whole
process (onnxruntime does not use oneDNN); its value is printed and written to the JSON.

    python benchmarks/latency.py --int8 [--models damoyolo-t ...] [--official-dir DIR] \
        [--threads 2] [--runs 30] [--rounds 1] [--json int8.json]

``--rounds R`` repeats the interleaved timing R times (the host's speed can change from minute
to minute, and the runtimes do not slow down alike): the table gives the median over rounds
and, next to the OV INT8 / ORT fp32 ratio, its range over the rounds.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import damoyolo
from damoyolo.export import export_onnx
from damoyolo.models.complexity import model_complexity

OFFICIAL = {"damoyolo-ns": "damoyolo_tinynasL18_Ns", "damoyolo-nm": "damoyolo_tinynasL18_Nm",
            "damoyolo-nl": "damoyolo_tinynasL20_Nl", "damoyolo-n": "damoyolo_tinynasL20_N",
            "damoyolo-t": "damoyolo_tinynasL20_T", "damoyolo-s": "damoyolo_tinynasL25_S",
            "damoyolo-m": "damoyolo_tinynasL35_M", "damoyolo-l": "damoyolo_tinynasL45_L"}


def ort_runner(path: Path, hw, threads: int):
    """A zero-argument callable running one batch-1 inference with onnxruntime."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    x = {name: (np.random.default_rng(0).random((1, 3, *hw)) * 255).astype(np.float32)}
    return lambda: s.run(None, x)


def ov_runner(path: Path, hw, threads: int):
    """The same with OpenVINO CPU, f32 precision hint, latency mode."""
    import openvino as ov
    core = ov.Core()
    c = core.compile_model(core.read_model(str(path)), "CPU",
                           {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
                            "PERFORMANCE_HINT": "LATENCY"})
    req = c.create_infer_request()
    x = (np.random.default_rng(0).random((1, 3, *hw)) * 255).astype(np.float32)
    return lambda: req.infer({0: x})


def with_activation(model, act: str):
    """The same preset with ``act`` in its backbone and neck (a diagnostic: not a DAMO-YOLO
    model), random weights."""
    import dataclasses
    cfg = model.cfg
    return damoyolo.build_model(dataclasses.replace(
        cfg, backbone=dataclasses.replace(cfg.backbone, act=act),
        neck=dataclasses.replace(cfg.neck, act=act)))


def interleaved(fns: dict, runs: int, warmup: int, gap_ms: float = 0.0) -> dict[str, float]:
    """Median milliseconds of each callable, timed round-robin after ``warmup`` calls each.

    ``gap_ms``: idle time before each timed call, so that one runtime's worker threads,
    still spinning after its call (onnxruntime's do, by default), do not take the cores
    from the next runtime's call."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    ts: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            if gap_ms > 0:
                time.sleep(gap_ms / 1e3)
            t0 = time.perf_counter()
            fn()
            ts[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in ts.items()}


def op_counts(path: Path) -> collections.Counter:
    """Nodes of an ONNX graph by op type (``Constant`` nodes left out)."""
    import onnx
    g = onnx.load(str(path), load_external_data=False).graph
    return collections.Counter(n.op_type for n in g.node if n.op_type != "Constant")


INT8_KEYS = ("ort_fp32", "ov_fp32", "ov_int8", "ov_int8_rh", "ort_int8_s8", "ort_int8_u8")
INT8_GOAL = {"damoyolo-ns": 0.6, "damoyolo-nm": 0.6, "damoyolo-nl": 0.6, "damoyolo-n": 0.6}


def int8_rows(args, td: Path) -> list[dict]:
    """The ``--int8`` table (module docstring); prints it row by row."""
    from damoyolo.workflows.int8 import export_int8

    data = args.int8_data
    if data is None:
        from damoyolo.data.synthetic import synthesize
        data = Path(td) / "calib"
        synthesize(data, images=max(2 * args.int8_images, 8), seed=0, size=320,
                   val_fraction=0.5, workers=1)
    quiet = {"progress": False, "log": lambda *_: None}
    print(f"oneDNN ISA cap (ONEDNN_MAX_CPU_ISA): {os.environ.get('ONEDNN_MAX_CPU_ISA', 'none')}"
          + (f"; activation replaced by {args.act} (diagnostic)" if args.act else ""))
    print("| model | input | ORT fp32 official-style (ms) | OpenVINO fp32 (ms) | OpenVINO INT8 "
          "(ms) | OV INT8 / ORT fp32 | goal | OV INT8 raw_heads (ms) | / ORT fp32 | ORT INT8 "
          "S8S8 (ms) | / ORT fp32 | ORT INT8 U8S8 (ms) | / ORT fp32 | load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    models = [(n, None) for n in args.models]
    if args.checkpoint:  # trained weights (INT8 speed can depend on them), at their input size
        from damoyolo.checkpoint import load_model
        ck = load_model(args.checkpoint)
        models = [(ck.cfg.name, ck)]
    for name, ck in models:
        m = ck if ck is not None else damoyolo.build_model(name)
        if args.act:
            m = with_activation(m, args.act)
        hw = tuple(m.input_size)
        off = Path(args.official_dir) / f"{OFFICIAL[name]}.onnx" if args.official_dir else None
        base = off if off is not None and off.is_file() and ck is None else \
            export_onnx(m, Path(td) / f"{name}_raw_heads.onnx", mode="raw_heads")
        files = {"ort_fp32": ("ort", base),
                 "ov_fp32": ("ov", export_onnx(m, Path(td) / f"{name}_raw.onnx")),
                 "ov_int8": ("ov", export_int8(m, Path(td) / f"{name}_int8.xml", "openvino",
                                               data=data, calib_images=args.int8_images,
                                               **quiet).path),
                 "ov_int8_rh": ("ov", export_int8(m, Path(td) / f"{name}_int8_rh.xml", "openvino",
                                                  data=data, calib_images=args.int8_images,
                                                  mode="raw_heads", **quiet).path),
                 "ort_int8_s8": ("ort", export_int8(m, Path(td) / f"{name}_s8.onnx", "onnx",
                                                    data=data, calib_images=args.int8_images,
                                                    **quiet).path),
                 "ort_int8_u8": ("ort", export_int8(m, Path(td) / f"{name}_u8.onnx", "onnx",
                                                    data=data, calib_images=args.int8_images,
                                                    onnx_activations="u8", **quiet).path)}
        runners = {"ort": ort_runner, "ov": ov_runner}
        r = {"model": name, "input": list(hw), "baseline": "official" if base == off else
             "ours raw_heads", "weights": "checkpoint" if ck is not None else "random",
             "load_before": round(os.getloadavg()[0], 2)}
        fns = {k: runners[rt](p, hw, args.threads) for k, (rt, p) in files.items()}
        rounds = [interleaved(fns, args.runs, args.warmup, args.gap_ms)
                  for _ in range(args.rounds)]
        for k in fns:
            r[f"{k}_ms"] = round(statistics.median(rd[k] for rd in rounds), 2)
        r["load_after"] = round(os.getloadavg()[0], 2)
        per_round = [rd["ov_int8"] / rd["ort_fp32"] for rd in rounds]
        r["ov_int8_ratio_rounds"] = [round(x, 3) for x in per_round]
        spread = f" ({min(per_round):.2f}-{max(per_round):.2f})" if len(rounds) > 1 else ""
        f32 = r["ort_fp32_ms"]
        goal = INT8_GOAL.get(name, 0.4)
        r.update(ov_int8_ratio=round(r["ov_int8_ms"] / f32, 3), goal=goal,
                 ov_int8_rh_ratio=round(r["ov_int8_rh_ms"] / f32, 3),
                 ort_int8_s8_ratio=round(r["ort_int8_s8_ms"] / f32, 3),
                 ort_int8_u8_ratio=round(r["ort_int8_u8_ms"] / f32, 3))
        rows.append(r)
        print(f"| {name} | {hw[0]} | {f32:.1f} | {r['ov_fp32_ms']:.1f} | {r['ov_int8_ms']:.1f} | "
              f"{r['ov_int8_ratio']:.2f}{spread} | <= {goal} | {r['ov_int8_rh_ms']:.1f} | "
              f"{r['ov_int8_rh_ratio']:.2f} | {r['ort_int8_s8_ms']:.1f} | "
              f"{r['ort_int8_s8_ratio']:.2f} | {r['ort_int8_u8_ms']:.1f} | "
              f"{r['ort_int8_u8_ratio']:.2f} | {r['load_before']:.1f}-{r['load_after']:.1f} |",
              flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official-dir", default=None)
    ap.add_argument("--models", nargs="+", default=damoyolo.list_models())
    ap.add_argument("--variants", nargs="+", default=["raw", "raw_heads"],
                    choices=["raw", "raw_heads"])
    ap.add_argument("--runtimes", nargs="+", default=["ort", "ov"], choices=["ort", "ov"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--ghz", type=float, default=2.45)
    ap.add_argument("--graphs", action="store_true",
                    help="print node counts by op type of our and the official graph")
    ap.add_argument("--rounds", type=int, default=1,
                    help="--int8: repeat the interleaved timing this many times; the table gives "
                         "the median over rounds and the OV INT8 / ORT fp32 ratio's range")
    ap.add_argument("--gap-ms", type=float, default=0.0,
                    help="--int8: idle milliseconds before each timed call (spinning threads "
                         "of the previous runtime's call settle)")
    ap.add_argument("--int8", action="store_true", help="the INT8 table (module docstring)")
    ap.add_argument("--int8-data", default=None, help="--int8: calibration dataset")
    ap.add_argument("--int8-images", type=int, default=32, help="--int8: calibration images")
    ap.add_argument("--checkpoint", default=None,
                    help="--int8: time this trained checkpoint (its preset and input size) "
                         "instead of random-weight presets")
    ap.add_argument("--act", default=None, choices=["relu"],
                    help="--int8 diagnostic: this activation in the backbone and neck instead "
                         "of the preset's (not a DAMO-YOLO model)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.rounds < 1 or (args.rounds > 1 and not args.int8):
        ap.error("--rounds must be at least 1, and more than 1 only with --int8")
    if args.act and (args.checkpoint or not args.int8):
        ap.error("--act is an --int8 diagnostic for random-weight presets (not with --checkpoint)")
    if args.int8:
        with tempfile.TemporaryDirectory() as td:
            rows = int8_rows(args, Path(td))
        if args.json:
            Path(args.json).write_text(json.dumps({"threads": args.threads, "runs": args.runs,
                                                   "warmup": args.warmup, "rounds": args.rounds,
                                                   "int8": True,
                                                   "onednn_max_cpu_isa":
                                                       os.environ.get("ONEDNN_MAX_CPU_ISA"),
                                                   "act": args.act,
                                                   "cpu_count": os.cpu_count(), "rows": rows},
                                                  indent=1))
        return
    peak = args.threads * 32 * args.ghz
    runners = {"ort": ort_runner, "ov": ov_runner}
    label = {"ort": "ORT", "ov": "OpenVINO"}
    rows = []
    ratio = "ours/official (" + " / ".join(args.variants) + ")"
    cols = [c for rt in args.runtimes for c in
            [*(f"{label[rt]} {v} (ms)" for v in args.variants), f"{label[rt]} official (ms)",
             f"{label[rt]} {ratio}"]]
    print("| model | input | GFLOPs | " + " | ".join(cols) + " | GFLOP/s (% peak) | load |")
    print("|---|---|---:|" + "---:|" * len(cols) + "---:|---:|")
    with tempfile.TemporaryDirectory() as td:
        for name in args.models:
            m = damoyolo.build_model(name)
            hw = tuple(m.input_size)
            _, gflops = model_complexity(m, hw)
            files = {v: export_onnx(m, Path(td) / f"{name}_{v}.onnx", mode=v)
                     for v in args.variants}
            off = Path(args.official_dir) / f"{OFFICIAL[name]}.onnx" if args.official_dir \
                else None
            if off is not None and off.is_file():
                files["official"] = off
            r = {"model": name, "input": list(hw), "gflops": round(gflops, 3),
                 "load_before": round(os.getloadavg()[0], 2)}
            for rt in args.runtimes:
                fns = {k: runners[rt](p, hw, args.threads) for k, p in files.items()}
                for k, ms in interleaved(fns, args.runs, args.warmup, args.gap_ms).items():
                    r[f"{rt}_{k}_ms"] = round(ms, 2)
            r["load_after"] = round(os.getloadavg()[0], 2)
            if args.graphs:
                r["ops"] = {k: dict(sorted(op_counts(p).items())) for k, p in files.items()}
            rows.append(r)

            cells = []
            for rt in args.runtimes:
                for v in args.variants:
                    cells.append(f"{r[f'{rt}_{v}_ms']:.1f}")
                o = r.get(f"{rt}_official_ms")
                cells.append(f"{o:.1f}" if o else "not measured")
                ratios = [f"{r[f'{rt}_{v}_ms'] / o:.2f}" for v in args.variants] if o else ["-"]
                cells.append(" / ".join(ratios))
            base = r.get(f"{args.runtimes[0]}_{args.variants[0]}_ms")
            gps = gflops / (base / 1e3) if base else 0.0
            print(f"| {name} | {hw[0]} | {gflops:.2f} | " + " | ".join(cells) +
                  f" | {gps:.0f} ({100 * gps / peak:.0f}%) | {r['load_before']:.1f}-"
                  f"{r['load_after']:.1f} |", flush=True)
            if args.graphs:
                for k, ops in r["ops"].items():
                    print(f"    {k}: {sum(ops.values())} nodes {ops}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "peak_gflops": peak,
                                               "runs": args.runs, "warmup": args.warmup,
                                               "cpu_count": os.cpu_count(),
                                               "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
