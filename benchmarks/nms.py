"""Speed of our vectorised NMS (damoyolo.ops.nms.batched_nms) against the greedy per-box
loop (greedy_nms_reference) on the same candidates, checking that both keep the same boxes.

    python benchmarks/nms.py [--n 10000] [--classes 80] [--threads 1] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from damoyolo.ops.nms import batched_nms, greedy_nms_reference


def candidates(n: int, classes: int, seed: int = 0, size: float = 640.0):
    """Detector-like candidates: boxes clustered around a few hundred objects."""
    g = torch.Generator().manual_seed(seed)
    objs = torch.rand(300, 4, generator=g) * torch.tensor([size, size, 120, 120]) + 10
    pick = torch.randint(0, 300, (n,), generator=g)
    c = objs[pick]
    jitter = torch.randn(n, 4, generator=g) * torch.tensor([6.0, 6.0, 8.0, 8.0])
    cx, cy, w, h = (c + jitter).unbind(1)
    boxes = torch.stack([cx - w.abs() / 2, cy - h.abs() / 2, cx + w.abs() / 2,
                         cy + h.abs() / 2], 1)
    scores = torch.rand(n, generator=g)
    labels = (pick % classes + (torch.rand(n, generator=g) < 0.2).long()) % classes
    return boxes, scores, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--iou", type=float, default=0.7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"| candidates | classes | kept | greedy loop (ms) | ours (ms) | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.n:
        b, s, lab = candidates(n, args.classes)
        t0 = time.perf_counter()
        ref = greedy_nms_reference(b, s, lab, args.iou)
        t_ref = (time.perf_counter() - t0) * 1e3
        batched_nms(b, s, lab, args.iou)  # warm-up
        ts = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            keep = batched_nms(b, s, lab, args.iou)
            ts.append((time.perf_counter() - t0) * 1e3)
        # same kept set (the order can differ only between exactly equal scores)
        assert torch.equal(keep.sort().values, ref.sort().values), "NMS differs from greedy"
        assert torch.equal(s[keep], s[ref])
        t = statistics.median(ts)
        print(f"| {n} | {args.classes} | {keep.numel()} | {t_ref:.1f} | {t:.1f} | "
              f"{t_ref / t:.1f}x |")


if __name__ == "__main__":
    main()
