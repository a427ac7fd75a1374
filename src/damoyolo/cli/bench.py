"""damoyolo bench: latency (median / p90), throughput, params and GFLOPs."""

from __future__ import annotations

import argparse

HELP = "measure latency and throughput of a model on a backend"


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="checkpoint (.pth) or export (.onnx / .xml / .engine)")
    src.add_argument("--model", help="preset name (random weights)")
    from ..infer.backends import BACKENDS
    p.add_argument("--backend", default=None, choices=list(BACKENDS),
                   help="default: from the weights suffix (torch for --model)")
    p.add_argument("--imgsz", type=int, nargs="+", default=None, help="input S or H W")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=50, help="timed runs (default 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed warm-up runs (default 10)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: all cores available to the process)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--half", action="store_true")
    from ._detector import add_trust_engine_argument
    add_trust_engine_argument(p)
    p.add_argument("--no-postprocess", action="store_true", help="time the model only")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")


def run(args: argparse.Namespace) -> int:
    import json
    import tempfile
    from pathlib import Path

    from ..infer.backends import default_threads
    from ..infer.benchmark import benchmark_detector
    from ..models.complexity import model_complexity
    from ..workflows.bench import open_bench_detector
    from . import CLIError

    if args.batch < 1 or args.runs < 1 or args.warmup < 0:
        raise CLIError("--batch and --runs must be >= 1, --warmup >= 0")
    if args.json:
        from ..outputs import refuse_overlap
        refuse_overlap(args.json, [args.weights], what="--json file")
    imgsz = None
    if args.imgsz:
        imgsz = (args.imgsz[0], args.imgsz[-1])
    threads = args.threads or default_threads()
    with tempfile.TemporaryDirectory() as td:
        det, torch_model = open_bench_detector(
            args.weights, model=args.model, backend=args.backend, imgsz=imgsz, batch=args.batch,
            device=args.device, half=args.half, threads=threads, workdir=td,
            trust_engine=args.trust_engine)
        res = benchmark_detector(det, batch=args.batch, runs=args.runs, warmup=args.warmup,
                                 threads=threads, postprocess=not args.no_postprocess)
    params, gflops = model_complexity(torch_model, det.input_size)
    out = res.to_dict()
    quantization = det.backend.meta.quantization
    out.update(model=torch_model.cfg.name, params_m=round(params, 3),
               quantization=quantization,
               gflops=round(gflops * args.batch, 3),
               gflops_per_s=round(gflops * args.batch / (res.median_ms / 1e3), 1))
    rows = [("model", out["model"]), ("backend", f"{res.backend} ({res.mode})"),
            ("input", f"{args.batch}x3x{res.input_size[0]}x{res.input_size[1]}"),
            ("threads", str(threads)),
            ("precision", "int8 (" + quantization["tool"] + ")"
             if quantization else "as exported"),
            ("params (M)", f"{params:.3f}"),
            ("GFLOPs", f"{out['gflops']:.3f}"),
            ("latency median (ms)", f"{res.median_ms:.2f}"),
            ("latency p90 (ms)", f"{res.p90_ms:.2f}"),
            ("throughput (img/s)", f"{res.throughput:.1f}"),
            ("achieved GFLOP/s", f"{out['gflops_per_s']:.1f}")]
    if res.e2e_median_ms is not None:
        rows += [("with post-proc. median (ms)", f"{res.e2e_median_ms:.2f}"),
                 ("with post-proc. p90 (ms)", f"{res.e2e_p90_ms:.2f}")]
    w = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{w}}  {v}" for k, v in rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        from ..outputs import atomic_write_text
        atomic_write_text(args.json, json.dumps(out, indent=1))
    return 0
