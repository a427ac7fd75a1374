"""AlignedOTA time per batch: batched implementation vs a straightforward per-image one.

Batch of 8 images at 640x640 (8400 priors), 20 GTs each, 80 classes, CPU.
Run from the repository root:  PYTHONPATH=src python benchmarks/assigner.py
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import torch

from damoyolo.assign import AlignedOTA, pad_targets
from damoyolo.models.heads.zero_head import make_priors


def _reference():
    path = Path(__file__).resolve().parents[1] / "tests" / "assign_reference.py"
    spec = importlib.util.spec_from_file_location("assign_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.assign_one


def main(repeats: int = 5, threads: int = 1) -> None:
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    b, c, n = 8, 80, 20
    priors = make_priors([(80, 80), (40, 40), (20, 20)], (8, 16, 32))
    a = priors.shape[0]
    targets = []
    for _ in range(b):
        xy = torch.rand(n, 2, generator=g) * 500
        wh = torch.rand(n, 2, generator=g) * 200 + 10
        targets.append({"boxes": torch.cat([xy, xy + wh], 1),
                        "labels": torch.randint(0, c, (n,), generator=g)})
    logits = torch.randn(b, a, c, generator=g) - 4
    ctr = priors[:, :2] + torch.randn(b, a, 2, generator=g) * 8
    half = torch.rand(b, a, 2, generator=g) * 60 + 4
    pred = torch.cat([ctr - half, ctr + half], -1)
    ota = AlignedOTA(c)
    ref = _reference()

    def batched():
        ota(logits, pred, priors, *pad_targets(targets))

    def per_image():
        p = logits.sigmoid()
        for i, t in enumerate(targets):
            ref(p[i], pred[i], priors, t["boxes"], t["labels"], c)

    rows = []
    for name, fn in (("batched (damoyolo.assign.AlignedOTA)", batched),
                     ("per-image reference (loop over GTs)", per_image)):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        rows.append((name, 1e3 * min(ts)))
    base = rows[1][1]
    print(f"| implementation | ms / batch (8 x 640, 20 GTs, {threads} thread) | speed-up |")
    print("|---|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} | {base / ms:.1f}x |")


if __name__ == "__main__":
    main(threads=int(sys.argv[1]) if len(sys.argv) > 1 else 1)
