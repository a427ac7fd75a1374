"""Depthwise convolutions in CPU training: torch's (oneDNN's) weight gradient against the
numba kernel of ``damoyolo.ops.depthwise``, per layer and for the whole model step.

1. Per layer: every depthwise convolution of ``--model`` at ``--imgsz``, batch ``--batch``
   (shapes found by running the model once), channels_last float32 tensors; the weight
   gradient by ``torch.ops.aten.convolution_backward`` (weight only) against
   :func:`damoyolo.ops.depthwise.depthwise_weight_grad`, and, for scale, the layer's forward
   pass and torch's input gradient.  The two weight gradients are compared (max relative
   difference).  Interleaved, median of ``--repeats``.
2. Whole step: the model's forward + backward (a squared-sum loss on the head outputs) in
   train mode, channels_last, with the numba kernel and with torch's (``DAMOYOLO_NO_NUMBA``),
   optionally also under a bfloat16 autocast (``--bf16``, CPUs with AMX), alternating.

The process keeps freed memory for reuse as the trainer does (``train.keep_freed_memory``,
:mod:`damoyolo.engine.cpu_memory`); ``--no-keep-freed-memory`` leaves glibc's defaults.

    PYTHONPATH=src python benchmarks/depthwise.py --model damoyolo-ns --imgsz 256 --batch 8 \\
        --threads 2 [--bf16]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

import damoyolo
import damoyolo.ops.depthwise as dw
from damoyolo.engine.cpu_memory import keep_freed_memory
from damoyolo.ops.depthwise import DepthwiseConv2d, depthwise_weight_grad


def median_ms(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def layer_shapes(model, x) -> list[tuple]:
    found = []

    def hook(mod, inp, out):
        found.append((tuple(inp[0].shape), mod.kernel_size[0], mod.stride[0], mod.padding[0]))

    hooks = [m.register_forward_hook(hook) for m in model.modules()
             if isinstance(m, DepthwiseConv2d)]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return found


def per_layer(shapes, repeats: int) -> None:
    print("| input (N, C, H, W) | k | stride | forward (ms) | torch input grad (ms) | "
          "torch weight grad (ms) | numba weight grad (ms) | torch / numba | max rel diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    tot = [0.0, 0.0, 0.0, 0.0]
    used = 0
    for shape, k, s, p in shapes:
        c = shape[1]
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c, 1, k, k) * 0.1
        g = torch.randn_like(F.conv2d(x, w, None, s, p, 1, c))

        def grad(mask, x=x, w=w, g=g, s=s, p=p, c=c):
            return torch.ops.aten.convolution_backward(g, x, w, None, [s, s], [p, p], [1, 1],
                                                       False, [0, 0], c, mask)

        ref = grad([False, True, False])[1]
        ours = depthwise_weight_grad(x, g, k, s, p)
        diff = float((ours - ref).abs().max() / ref.abs().max())
        fwd = median_ms(lambda: F.conv2d(x, w, None, s, p, 1, c), repeats)
        ig = median_ms(lambda: grad([True, False, False]), repeats)
        wt, wn = [], []
        for _ in range(repeats):  # interleaved
            wt.append(median_ms(lambda: grad([False, True, False]), 1))
            wn.append(median_ms(lambda: depthwise_weight_grad(x, g, k, s, p), 1))
        wt_m, wn_m = statistics.median(wt), statistics.median(wn)
        fast = k >= 5  # where DepthwiseConv2d uses the numba kernel
        if fast:
            used += 1
            for i, v in enumerate((fwd, ig, wt_m, wn_m)):
                tot[i] += v
        note = "" if fast else " (not used: torch's kernel)"
        print(f"| {shape} | {k} | {s} | {fwd:.2f} | {ig:.2f} | {wt_m:.2f} | {wn_m:.2f}{note} | "
              f"{wt_m / wn_m:.1f}x | {diff:.1e} |")
    print(f"| the {used} layers of {len(shapes)} where the kernel is used | | | {tot[0]:.1f} | "
          f"{tot[1]:.1f} | {tot[2]:.1f} | {tot[3]:.1f} | {tot[2] / tot[3]:.1f}x | |")


def whole_step(model, x, rounds: int, repeats: int, bf16: bool) -> None:
    model.train()

    def step(amp: bool):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        loss = sum(o.float().square().mean() for o in list(out.cls) + list(out.reg))
        model.zero_grad(set_to_none=True)
        loss.backward()

    variants = [("numba weight grad, float32", False, False),
                ("torch weight grad, float32", True, False)]
    if bf16:
        variants.append(("numba weight grad, bfloat16 autocast (depthwise float32)", False,
                         True))
    res: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, no_numba, amp in variants:
            dw._kernel = None
            os.environ["DAMOYOLO_NO_NUMBA"] = "1" if no_numba else ""
            res.setdefault(name, []).append(median_ms(lambda amp=amp: step(amp), repeats))
    os.environ["DAMOYOLO_NO_NUMBA"] = ""
    dw._kernel = None
    base = statistics.median(res["torch weight grad, float32"])
    print("| model forward + backward | ms / step (median of rounds) | rounds | vs torch |")
    print("|---|---:|---|---:|")
    for name, v in res.items():
        m = statistics.median(v)
        print(f"| {name} | {m:.1f} | {', '.join(f'{a:.0f}' for a in v)} | {m / base:.2f}x |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="damoyolo-ns")
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="also time a bfloat16 autocast step")
    ap.add_argument("--no-keep-freed-memory", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    kept = False if args.no_keep_freed_memory else keep_freed_memory()
    if not dw.fast_weight_grad_available():
        raise SystemExit("numba is not installed (pip install 'damoyolo[train]')")
    torch.manual_seed(0)
    model = damoyolo.build_model(args.model, num_classes=6).to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, args.imgsz, args.imgsz).contiguous(
        memory_format=torch.channels_last)
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.threads} torch thread(s), torch {torch.__version__}; {args.model} at "
          f"{args.imgsz}, batch {args.batch}; freed memory kept for reuse: {kept}")
    per_layer(layer_shapes(model, x), args.repeats)
    print()
    whole_step(model, x, args.rounds, args.repeats, args.bf16)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
