"""AlignedOTA time per batch: batched implementation vs a per-image one (and the official code).

Batch of 8 images at 640x640 (8400 priors), 20 GTs each, 80 classes, CPU.  Columns:
  - ours: ``damoyolo.assign.AlignedOTA`` (whole batch at once),
  - a straightforward per-image reference (``tests/assign/assign_reference.py``, loop over GTs),
  - with ``--official DIR``: the official assignment code path, i.e. the official ZeroHead's
    ``get_targets`` (per image: ``AlignOTAAssigner.assign`` -> ``dynamic_k_matching``, then
    ``sample`` and the target tensors), called on the same tensors (sigmoid scores, decoded
    boxes, priors, GTs) of the damoyolo-t head built from the official config.
Ours and the others are timed interleaved (A, B, C, A, B, C ...); medians are reported.
The official and our assignments are compared (positives and matched GT per prior).

Run from the repository root:
    PYTHONPATH=src python benchmarks/assigner.py [--official ../DAMO-YOLO] [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

from damoyolo.assign import AlignedOTA, pad_targets
from damoyolo.models.heads.zero_head import make_priors


def _reference():
    path = Path(__file__).resolve().parents[1] / "tests" / "assign" / "assign_reference.py"
    spec = importlib.util.spec_from_file_location("assign_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.assign_one


def _official_head(root: str, num_classes: int):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _official import add_official, build_official_model

    from damoyolo import get_preset

    r = add_official(root)
    model, _ = build_official_model(r, get_preset("damoyolo-t").official_config, num_classes)
    return model.head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("threads_pos", nargs="?", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--official", default=None, help="official DAMO-YOLO checkout to time side by side")
    args = ap.parse_args()
    threads = args.threads_pos or args.threads
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
    probs = logits.sigmoid()

    def batched():
        return ota(logits, pred, priors, *pad_targets(targets))

    def per_image():
        for i, t in enumerate(targets):
            ref(probs[i], pred[i], priors, t["boxes"], t["labels"], c)

    fns = [("ours: batched (damoyolo.assign.AlignedOTA)", batched),
           ("per-image reference (loop over GTs)", per_image)]
    if args.official:
        head = _official_head(args.official, c)
        pri_b = priors.unsqueeze(0).expand(b, a, 4).contiguous()
        gtb = [t["boxes"] for t in targets]
        gtl = [t["labels"] for t in targets]

        def official():
            with torch.no_grad():
                return head.get_targets(probs, pred, gtb, pri_b, gt_labels_list=gtl)

        fns.append(("official ZeroHead.get_targets (AlignOTAAssigner per image)", official))
        # same assignment?
        ours_res = batched()
        off = official()
        off_labels = torch.stack(off[0])  # (B, A), num_classes = background
        same_fg = torch.equal(ours_res.fg, off_labels != c)
        same_lab = torch.equal(ours_res.labels, off_labels)
        print(f"# assignment agrees with official: positives {same_fg}, labels {same_lab} "
              f"({ours_res.num_pos} vs {int((off_labels != c).sum())} positives)")

    for _, fn in fns:
        fn()  # warm-up
    ts: dict[str, list[float]] = {name: [] for name, _ in fns}
    for _ in range(args.repeats):
        for name, fn in fns:
            t0 = time.perf_counter()
            fn()
            ts[name].append(time.perf_counter() - t0)
    rows = [(name, 1e3 * statistics.median(ts[name])) for name, _ in fns]
    ours_ms = rows[0][1]
    print(f"| implementation | ms / batch (8 x 640, 20 GTs, {threads} thread) | time / ours |")
    print("|---|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} | {ms / ours_ms:.1f}x |")


if __name__ == "__main__":
    main()
