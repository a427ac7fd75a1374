"""Paired-seed ablation runner: named arms over the same seeds on the same data.

    python benchmarks/ablate.py benchmarks/studies/distill_ns.json            # run / resume
    python benchmarks/ablate.py benchmarks/studies/distill_ns.json --seeds 0-19
    python benchmarks/ablate.py benchmarks/studies/distill_ns.json --table    # table + plot only

A study is a JSON file::

    {"name": "distill_ns",
     "data": {"synth": {"images": 400, "size": 256, "min_size": 16, "seed": 0}},  # or {"path": D}
     "model": "damoyolo-ns", "imgsz": 256, "epochs": 12, "batch": 8,
     "set": ["..."],                                  # overrides shared by every arm
     "teachers": {"nl24": {"model": "damoyolo-nl", "epochs": 24, "seed": 0}},
     "arms": {"plain": {}, "cwd": {"teacher": "nl24", "set": ["distill.weight=0.5"]}},
     "baseline": "plain", "seeds": 10}

Each arm is the study's ``damoyolo train`` run plus the arm's own ``set`` overrides (dotted
``key=value``, as ``--set``) and, optionally, a teacher (a key of ``teachers``, trained once
by the runner at the student's input size, or a checkpoint path) or a different ``model``.
Every arm runs every seed (``train.seed``); the data are the same for all.

Runs go one at a time, seed by seed (all arms of seed 0, then of seed 1, ...), each in its
own process with ``--threads`` torch threads.  A finished run's result is a JSON file
``OUT/results/<arm>/seed<k>.json`` (mAP@[.5:.95] and AP50 of the last epoch's evaluation,
wall-clock seconds, CPU, precision, torch version, the teacher's checksum); a run with no
result restarts from scratch, so the study resumes after a kill by running the same command.
Training artifacts go under ``--work`` (default ``runs/ablate/<name>``).

Output: ``OUT/table.md`` (printed too): per arm, n, mean +- standard error of mAP and AP50, the
seed-to-seed standard deviation (measured), the time per run; per arm against the baseline,
the mean paired difference with its 95% t interval over the seeds both have; and
``OUT/map_per_seed.png`` (mAP per seed per arm, pairs joined).  OUT defaults to
``docs/ablations/<name>``, so results can be kept with the docs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------- statistics


def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t distribution (scipy)."""
    from scipy.stats import t
    return float(t.ppf(p, df))


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    sd: float  # sample standard deviation (n - 1); nan for n < 2
    se: float  # standard error of the mean; nan for n < 2

    @classmethod
    def of(cls, xs: list[float]) -> Summary:
        n = len(xs)
        if n == 0:
            return cls(0, math.nan, math.nan, math.nan)
        mean = sum(xs) / n
        if n < 2:
            return cls(n, mean, math.nan, math.nan)
        sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
        return cls(n, mean, sd, sd / math.sqrt(n))

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Two-sided t interval of the mean; (nan, nan) for n < 2."""
        if self.n < 2:
            return (math.nan, math.nan)
        h = t_quantile(0.5 + level / 2, self.n - 1) * self.se
        return (self.mean - h, self.mean + h)


def paired(arm: dict[int, float], base: dict[int, float]) -> tuple[Summary, list[int]]:
    """Summary of ``arm[s] - base[s]`` over the seeds both have, and those seeds."""
    seeds = sorted(set(arm) & set(base))
    return Summary.of([arm[s] - base[s] for s in seeds]), seeds


# ----------------------------------------------------------------------------- study


class StudyError(ValueError):
    pass


def parse_seeds(spec: str | int | list) -> list[int]:
    """``10`` -> 0..9; ``"0-19"`` -> 0..19; ``"3,5,8"``; a list of ints."""
    if isinstance(spec, int):
        return list(range(spec))
    if isinstance(spec, list):
        return [int(s) for s in spec]
    out: list[int] = []
    for part in str(spec).split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        elif part.strip():
            out.append(int(part))
    return out


def load_study(path: str | Path) -> dict:
    path = Path(path)
    try:
        study = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StudyError(f"{path}: cannot read the study ({e})") from None
    for key in ("name", "data", "model", "arms", "baseline"):
        if key not in study:
            raise StudyError(f"{path}: missing key {key!r}")
    if study["baseline"] not in study["arms"]:
        raise StudyError(f"{path}: baseline {study['baseline']!r} is not an arm "
                         f"({', '.join(study['arms'])})")
    for name, arm in study["arms"].items():
        t = arm.get("teacher")
        if t and t not in study.get("teachers", {}) and not Path(t).is_file():
            raise StudyError(f"{path}: arm {name!r}: teacher {t!r} is neither a key of "
                             f"'teachers' nor a file")
    return study


def _sha256(path: Path) -> str:
    from damoyolo.metadata import file_sha256  # the package's one copy
    return file_sha256(path)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
        else:
            name = platform.processor() or platform.machine()
        flags = next((ln.split(":", 1)[1].split() for ln in
                      Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), [])
    except OSError:
        return platform.processor() or platform.machine()
    isa = [f for f in ("amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2") if f in flags]
    return f"{name} ({', '.join(isa)})" if isa else name


def _write_json(path: Path, obj: dict) -> None:
    from damoyolo.outputs import atomic_write_text
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


# The child process: one damoyolo.train() call at the given thread count; prints the record.
_CHILD = r"""
import json, sys, time, torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args.pop("threads"))
import damoyolo
t0 = time.perf_counter()
rec = damoyolo.train(progress=args.pop("progress"), **args)
rec = {k: v for k, v in rec.items() if isinstance(v, (int, float, str))}
rec["seconds"] = time.perf_counter() - t0
print("ABLATE_RESULT " + json.dumps(rec), flush=True)
"""


class Runner:
    def __init__(self, study: dict, out: Path, work: Path, threads: int, progress: bool = False,
                 echo=print):
        self.study, self.out, self.work = study, out, work
        self.threads, self.progress, self.echo = threads, progress, echo

    # -------------------------------------------------------------- data and teachers
    def data(self) -> Path:
        spec = self.study["data"]
        if "path" in spec:
            return Path(spec["path"])
        syn = spec["synth"]  # shared by the studies that synthesize the same data
        key = hashlib.sha256(json.dumps(syn, sort_keys=True).encode()).hexdigest()[:10]
        d = self.work.parent / "data" / f"synth-{key}"
        done = d / "annotations" / "val.json"
        if not done.exists():
            if d.exists():
                shutil.rmtree(d)
            self.echo(f"writing the synthetic dataset {d}")
            from damoyolo.data import synthesize
            synthesize(d, images=syn.get("images", 400), seed=syn.get("seed", 0),
                       size=syn.get("size", 256), min_size_px=syn.get("min_size", 8),
                       classes=syn.get("classes"))
        return d

    def teacher(self, key: str) -> tuple[Path, dict]:
        """The checkpoint of teacher ``key`` (trained once) and its record."""
        teachers = self.study.get("teachers", {})
        if key not in teachers:
            p = Path(key)
            return p, {"path": str(p), "sha256": _sha256(p)}
        spec = teachers[key]
        folder = self.work / "teachers" / key
        ckpt = folder / "last.pt"
        rec_path = self.out / "teachers" / f"{key}.json"
        if ckpt.exists() and (folder / "done").exists():
            rec = json.loads(rec_path.read_text()) if rec_path.exists() else {}
            sha = _sha256(ckpt)
            if rec.get("sha256") != sha:  # trained here again (e.g. on another machine)
                rec = {**rec, "sha256": sha}
                _write_json(rec_path, rec)
            return ckpt, rec
        if folder.exists():
            shutil.rmtree(folder)
        self.echo(f"training teacher {key}: {spec}")
        args = {"model": spec["model"], "data": str(self.data()),
                "imgsz": spec.get("imgsz", self.study.get("imgsz")),
                "epochs": spec.get("epochs"), "batch": spec.get("batch", self.study.get("batch")),
                "output": str(folder), "overrides": [f"train.seed={spec.get('seed', 0)}",
                                                     "train.tensorboard=False",
                                                     *spec.get("set", [])]}
        rec = self._child(args)
        rec = {"key": key, **spec, "mAP": rec.get("val_AP"), "AP50": rec.get("val_AP50"),
               "seconds": rec["seconds"], "cpu": cpu_name(), "sha256": _sha256(ckpt)}
        _write_json(rec_path, rec)
        (folder / "done").write_text("")
        return ckpt, rec

    # -------------------------------------------------------------- runs
    def _child(self, args: dict) -> dict:
        args = {**args, "threads": self.threads, "progress": self.progress}
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        src = str(ROOT / "src")
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], env=env,
                              stdout=subprocess.PIPE, stderr=None if self.progress else
                              subprocess.PIPE, text=True)
        for line in proc.stdout.splitlines():
            if line.startswith("ABLATE_RESULT "):
                return json.loads(line[len("ABLATE_RESULT "):])
        tail = (proc.stderr or "")[-3000:]
        raise RuntimeError(f"run failed (exit {proc.returncode}): {args}\n{tail}")

    def result_path(self, arm: str, seed: int) -> Path:
        return self.out / "results" / arm / f"seed{seed}.json"

    def run(self, arm: str, seed: int) -> dict:
        spec = self.study["arms"][arm]
        folder = self.work / "runs" / arm / f"seed{seed}"
        if folder.exists():  # a half-finished run restarts
            shutil.rmtree(folder)
        overrides = [*self.study.get("set", []), *spec.get("set", []), f"train.seed={seed}",
                     "train.tensorboard=False"]
        args = {"model": spec.get("model", self.study["model"]), "data": str(self.data()),
                "imgsz": self.study.get("imgsz"), "epochs": self.study.get("epochs"),
                "batch": self.study.get("batch"), "output": str(folder), "overrides": overrides}
        teacher = None
        if spec.get("teacher"):
            ckpt, teacher = self.teacher(spec["teacher"])
            args["teacher"] = str(ckpt)
        rec = self._child(args)
        result = {"arm": arm, "seed": seed, "mAP": rec.get("val_AP"), "AP50": rec.get("val_AP50"),
                  "seconds": rec["seconds"], "cpu": cpu_name(), "threads": self.threads,
                  "torch": _torch_version(), "overrides": overrides,
                  "teacher_sha256": teacher["sha256"] if teacher else None,
                  "losses": {k: v for k, v in rec.items() if k.startswith("loss")}}
        _write_json(self.result_path(arm, seed), result)
        for f in folder.glob("*.pt"):  # keep the logs, not the checkpoints
            f.unlink()
        return result

    def pending(self, seeds: list[int], arms: list[str]) -> list[tuple[str, int]]:
        return [(a, s) for s in seeds for a in arms if not self.result_path(a, s).exists()]

    def run_all(self, seeds: list[int], arms: list[str], max_runs: int | None = None) -> None:
        todo = self.pending(seeds, arms)
        self.echo(f"{len(todo)} runs to do ({len(seeds)} seeds x {len(arms)} arms, "
                  f"{len(seeds) * len(arms) - len(todo)} done)")
        for k, (arm, seed) in enumerate(todo[:max_runs] if max_runs else todo):
            t0 = time.perf_counter()
            r = self.run(arm, seed)
            self.echo(f"[{k + 1}/{len(todo)}] {arm} seed {seed}: mAP {r['mAP']:.4f} "
                      f"AP50 {r['AP50']:.4f} ({time.perf_counter() - t0:.0f} s)")

    # -------------------------------------------------------------- report
    def results(self) -> dict[str, dict[int, dict]]:
        res: dict[str, dict[int, dict]] = {}
        for arm in self.study["arms"]:
            d = self.out / "results" / arm
            for f in sorted(d.glob("seed*.json")) if d.exists() else []:
                r = json.loads(f.read_text())
                res.setdefault(arm, {})[int(r["seed"])] = r
        return res


def _torch_version() -> str:
    try:
        import torch
        return torch.__version__
    except ImportError:  # pragma: no cover
        return "?"


def _fmt(x: float, nd: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def table(study: dict, res: dict[str, dict[int, dict]], teachers: dict[str, dict] | None = None
          ) -> str:
    """The markdown report of the results so far."""
    base = study["baseline"]
    lines = [f"# Ablation: {study['name']}", ""]
    if study.get("description"):
        lines += [study["description"], ""]
    cpus = sorted({r["cpu"] for arm in res.values() for r in arm.values()})
    lines += [f"Model `{study['model']}`, {study.get('epochs')} epochs at {study.get('imgsz')} px, "
              f"batch {study.get('batch')}; data: `{json.dumps(study['data'])}`; common "
              f"overrides: `{' '.join(study.get('set', [])) or '-'}`.",
              f"CPU: {'; '.join(cpus) or '-'}.", ""]
    for key, t in (teachers or {}).items():
        lines.append(f"Teacher `{key}`: {t.get('model')}, {t.get('epochs')} epochs, mAP "
                     f"{_fmt(t.get('mAP'))} AP50 {_fmt(t.get('AP50'))} "
                     f"({(t.get('seconds') or 0) / 60:.1f} min), "
                     f"sha256 {str(t.get('sha256'))[:12]}.")
    if teachers:
        lines.append("")
    lines += ["| arm | runs | mAP mean +- s.e. | seed s.d. | AP50 mean +- s.e. | min / run | "
              "total min |", "|---|---:|---:|---:|---:|---:|---:|"]
    total = 0.0
    for arm, spec in study["arms"].items():
        rs = res.get(arm, {})
        m = Summary.of([r["mAP"] for r in rs.values()])
        a = Summary.of([r["AP50"] for r in rs.values()])
        secs = [r["seconds"] for r in rs.values()]
        total += sum(secs)
        lines.append(f"| {arm} | {m.n} | {_fmt(m.mean)} +- {_fmt(m.se)} | {_fmt(m.sd)} | "
                     f"{_fmt(a.mean)} +- {_fmt(a.se)} | "
                     f"{_fmt(sum(secs) / len(secs) / 60 if secs else math.nan, 1)} | "
                     f"{_fmt(sum(secs) / 60, 1)} |")
    lines += ["", f"All runs: {total / 60:.1f} min.", "",
              f"Paired differences against `{base}` (arm - {base}, same seeds; 95% t interval):",
              "", "| arm | pairs | d mAP mean | 95% interval | d AP50 mean | 95% interval | "
              "arm better in |", "|---|---:|---:|---:|---:|---:|---:|"]
    b = res.get(base, {})
    for arm in study["arms"]:
        if arm == base:
            continue
        rs = res.get(arm, {})
        dm, seeds = paired({s: r["mAP"] for s, r in rs.items()},
                           {s: r["mAP"] for s, r in b.items()})
        da, _ = paired({s: r["AP50"] for s, r in rs.items()},
                       {s: r["AP50"] for s, r in b.items()})
        lo, hi = dm.interval()
        alo, ahi = da.interval()
        wins = sum(rs[s]["mAP"] > b[s]["mAP"] for s in seeds)
        lines.append(f"| {arm} | {dm.n} | {_fmt(dm.mean, 4)} | [{_fmt(lo)}, {_fmt(hi)}] | "
                     f"{_fmt(da.mean)} | [{_fmt(alo)}, {_fmt(ahi)}] | {wins}/{len(seeds)} |")
    lines += ["", "Arms:", ""]
    for arm, spec in study["arms"].items():
        desc = spec.get("description", "")
        bits = ([f"teacher `{spec['teacher']}`"] if spec.get("teacher") else []) + \
            ([f"model `{spec['model']}`"] if spec.get("model") else []) + \
            [f"`{s}`" for s in spec.get("set", [])]
        lines.append(f"- `{arm}`: {', '.join(bits) or 'the study settings'}"
                     + (f". {desc}" if desc else ""))
    return "\n".join(lines) + "\n"


def plot(study: dict, res: dict[str, dict[int, dict]], path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    arms = [a for a in study["arms"] if res.get(a)]
    if not arms:
        return False
    seeds = sorted({s for a in arms for s in res[a]})
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(seeds) + 2), 3.6))
    width = 0.6 / max(1, len(arms))
    for i, arm in enumerate(arms):
        xs = [s + (i - (len(arms) - 1) / 2) * width for s in seeds if s in res[arm]]
        ys = [res[arm][s]["mAP"] for s in seeds if s in res[arm]]
        mean = sum(ys) / len(ys)
        ax.scatter(xs, ys, s=18, label=f"{arm} (mean {mean:.3f})", zorder=3)
        ax.axhline(mean, lw=0.8, ls="--", color=ax.collections[-1].get_facecolor()[0])
    for s in seeds:  # join each seed's runs
        pts = [(s + (i - (len(arms) - 1) / 2) * width, res[a][s]["mAP"])
               for i, a in enumerate(arms) if s in res[a]]
        if len(pts) > 1:
            ax.plot(*zip(*pts), color="0.7", lw=0.7, zorder=1)
    ax.set_xlabel("seed")
    ax.set_ylabel("mAP@[.5:.95]")
    ax.set_xticks(seeds)
    ax.set_title(study["name"])
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    from damoyolo.outputs import atomic_output
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return True


def report(runner: Runner) -> str:
    res = runner.results()
    teachers = {}
    tdir = runner.out / "teachers"
    for f in sorted(tdir.glob("*.json")) if tdir.exists() else []:
        teachers[f.stem] = json.loads(f.read_text())
    text = table(runner.study, res, teachers)
    from damoyolo.outputs import atomic_write_text
    atomic_write_text(runner.out / "table.md", text)
    plot(runner.study, res, runner.out / "map_per_seed.png")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("study", help="study JSON file")
    p.add_argument("--seeds", default=None, help="e.g. 10, 0-19 or 0,3,5 (default: the study's)")
    p.add_argument("--arms", default=None, help="comma-separated subset of the arms")
    p.add_argument("--out", default=None, help="results folder (default docs/ablations/NAME)")
    p.add_argument("--work", default=None, help="training folder (default runs/ablate/NAME)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per run")
    p.add_argument("--max-runs", type=int, default=None, help="stop after this many runs")
    p.add_argument("--table", action="store_true", help="only write the table and the plot")
    p.add_argument("--progress", action="store_true", help="show each run's progress")
    args = p.parse_args(argv)
    try:
        study = load_study(args.study)
        seeds = parse_seeds(args.seeds if args.seeds is not None else study.get("seeds", 10))
    except (StudyError, ValueError) as e:
        print(f"ablate.py: error: {e}", file=sys.stderr)
        return 2
    arms = list(study["arms"]) if args.arms is None else args.arms.split(",")
    unknown = [a for a in arms if a not in study["arms"]]
    if unknown:
        print(f"ablate.py: error: unknown arm(s) {', '.join(unknown)}; valid: "
              f"{', '.join(study['arms'])}", file=sys.stderr)
        return 2
    out = Path(args.out or ROOT / "docs" / "ablations" / study["name"])
    work = Path(args.work or ROOT / "runs" / "ablate" / study["name"])
    runner = Runner(study, out, work, args.threads, args.progress,
                    echo=lambda s: print(s, flush=True))
    if not args.table:
        runner.run_all(seeds, arms, args.max_runs)
    print(report(runner), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
