"""CPU latency of every preset (batch 1, native input size): our ONNX export on
onnxruntime and on OpenVINO (f32), side by side with the official DAMO-YOLO export of the
same architecture when its file is given.

    python benchmarks/latency.py [--official-dir DIR] [--threads 2] [--runs 30] [--json out.json]

``--official-dir`` holds official benchmark-mode ONNX files named after the official
configs (``damoyolo_tinynasL20_T.onnx``, ...; produced by the official exporter outside
this project).  Models have random weights: latency does not depend on them.
Achieved GFLOP/s = thop GFLOPs / median latency; the peak is cores x 32 fp32 FLOP/cycle
(two 256-bit FMA pipes) x the clock given by ``--ghz``.
"""

from __future__ import annotations

import argparse
import json
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


def _time(fn, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def ort_latency(path: Path, hw, threads: int, runs: int, warmup: int) -> float:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    x = {name: (np.random.default_rng(0).random((1, 3, *hw)) * 255).astype(np.float32)}
    return _time(lambda: s.run(None, x), runs, warmup)


def ov_latency(path: Path, hw, threads: int, runs: int, warmup: int) -> float:
    import openvino as ov
    core = ov.Core()
    c = core.compile_model(core.read_model(str(path)), "CPU",
                           {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
                            "PERFORMANCE_HINT": "LATENCY"})
    req = c.create_infer_request()
    x = (np.random.default_rng(0).random((1, 3, *hw)) * 255).astype(np.float32)
    return _time(lambda: req.infer({0: x}), runs, warmup)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official-dir", default=None)
    ap.add_argument("--models", nargs="+", default=damoyolo.list_models())
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--ghz", type=float, default=2.45)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    peak = args.threads * 32 * args.ghz
    rows = []
    hdr = ("| model | input | GFLOPs | ORT ours (ms) | ORT official (ms) | ours/official | "
           "ORT GFLOP/s (% peak) | OpenVINO ours (ms) | OpenVINO official (ms) |")
    print(hdr)
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as td:
        for name in args.models:
            m = damoyolo.build_model(name)
            hw = m.input_size
            _, gflops = model_complexity(m, hw)
            ours = export_onnx(m, Path(td) / f"{name}.onnx")
            r = {"model": name, "input": list(hw), "gflops": round(gflops, 3),
                 "ort_ours_ms": ort_latency(ours, hw, args.threads, args.runs, args.warmup),
                 "ov_ours_ms": ov_latency(ours, hw, args.threads, args.runs, args.warmup)}
            off = Path(args.official_dir) / f"{OFFICIAL[name]}.onnx" if args.official_dir \
                else None
            if off is not None and off.is_file():
                r["ort_official_ms"] = ort_latency(off, hw, args.threads, args.runs,
                                                   args.warmup)
                r["ov_official_ms"] = ov_latency(off, hw, args.threads, args.runs,
                                                 args.warmup)
            rows.append(r)

            def f(k):
                return f"{r[k]:.1f}" if k in r else "not measured"
            ratio = (f"{r['ort_ours_ms'] / r['ort_official_ms']:.2f}"
                     if "ort_official_ms" in r else "-")
            gps = gflops / (r["ort_ours_ms"] / 1e3)
            print(f"| {name} | {hw[0]} | {gflops:.2f} | {f('ort_ours_ms')} | "
                  f"{f('ort_official_ms')} | {ratio} | {gps:.0f} ({100 * gps / peak:.0f}%) | "
                  f"{f('ov_ours_ms')} | {f('ov_official_ms')} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "peak_gflops": peak,
                                               "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
