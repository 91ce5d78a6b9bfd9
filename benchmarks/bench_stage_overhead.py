"""Fixed cost of a small train and evaluate stage under `dvc repro`, old code against new (docs/BENCHMARKS.md).

    .venv/bin/python benchmarks/bench_stage_overhead.py <built clone> <scratch folder> \
        [--old-ref 2dd9483] [--rounds 3] [--variant fr-dn] [--bin <venv>/bin]

Builds two git + DVC projects in the scratch folder, the pipeline of --old-ref ("old") and of this
working tree ("new"), each with copies of the clone's FineDiving feature cache, annotations and
I3D weights (the clone is only read). Each round runs, on both sides in alternating order, from
the same state (no model folder, no dvc.lock, the same copy of the clone's mlflow.db):
`dvc repro -f -s train@<variant>` then `dvc repro -f -s evaluate@<variant>`, each side with its
own `src` first on PYTHONPATH, and prints the wall and CPU (user + sys of all child processes) of
each stage, best of the rounds, and the ratio. Last it checks that both sides computed the same
numbers: every weight of every seed's best_val.pt and checkpoint.pt bit for bit, the histories'
metrics, the predictions and the metrics file without its provenance block (which names the code
that made it, so differs by design).

With --parts, it times instead each fixed cost this change removes, in fresh processes, old and new
alternating, best of --rounds (a stage's wall time on a shared machine varies by more than they
add up to): the first `set_determinism` of a train process, the first `log_seed_model` of a tiny
model into a new store, and `snakemake --list-rules` (Snakemake's start and reading the Snakefile).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

DATA = ("data/processed/features/finediving/i3d", "data/processed/annotations/finediving", "data/external/i3d")


def sh(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    return subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def build(side: Path, repo: Path, ref: str | None, clone: Path) -> None:
    """A git + DVC project: the pipeline at `ref` (None: the working tree's files), the clone's data."""
    side.mkdir(parents=True)
    if ref is None:
        files = sh(["git", "ls-files", "--cached", "--others", "--exclude-standard"], repo).split("\n")
        for f in filter(None, files):
            if (repo / f).is_file():
                (side / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(repo / f, side / f, follow_symlinks=False)
    else:
        archive = subprocess.run(["git", "archive", ref], cwd=repo, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(side)], input=archive, check=True)
    for d in DATA:
        shutil.copytree(clone / d, side / d, symlinks=True)
    (side / "data/interim/frames/finediving").mkdir(parents=True)   # read only by finetune
    (side / "data/interim/frames/finediving/.keep").touch()
    (side / "dvc.lock").unlink(missing_ok=True)
    ident = ["-c", "user.name=bench", "-c", "user.email=bench@bench"]
    sh(["git", "init", "-q"], side)
    sh(["git", *ident, "add", "-A"], side)
    sh(["git", *ident, "commit", "-qm", "bench"], side)


def env_for(side: Path, bin_dir: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(side / "src"), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                MLFLOW_TRACKING_URI=f"sqlite:///{side / 'mlflow.db'}")


def reset(side: Path, mlflow_db: Path) -> None:
    """The state every run starts from: nothing trained, no lock, the clone's MLflow store."""
    for p in ("models", "reports", ".aqa/work", "logs", "mlartifacts", ".dvc/cache", ".dvc/tmp"):
        shutil.rmtree(side / p, ignore_errors=True)
    (side / "dvc.lock").unlink(missing_ok=True)
    shutil.copyfile(mlflow_db, side / "mlflow.db")


def timed(args: list[str], side: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU of the child processes) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=side, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"{' '.join(args)} failed in {side}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def same_numbers(old: Path, new: Path, variant: str) -> list[str]:
    """What differs between the two sides' outputs (empty: the same numbers)."""
    import pandas as pd
    import torch

    problems = []
    models = sorted((old / "models/finediving" / variant).glob("seed*"))
    for seed_dir in models:
        other = new / seed_dir.relative_to(old)
        for name in ("best_val.pt", "checkpoint.pt"):
            a = torch.load(seed_dir / name, map_location="cpu", weights_only=False)
            b = torch.load(other / name, map_location="cpu", weights_only=False)
            for key in ("model", "optimizer", "rng", "history", "epoch"):
                if key in a and not _equal(a[key], b[key]):
                    problems.append(f"{seed_dir.name}/{name}: {key} differs")
        ha = json.loads((seed_dir / "history.json").read_text())
        hb = json.loads((other / "history.json").read_text())
        if _numbers(ha) != _numbers(hb):
            problems.append(f"{seed_dir.name}/history.json: metrics differ")
    for parquet in sorted((old / "reports/predictions/finediving" / variant).glob("*.parquet")):
        if not pd.read_parquet(parquet).equals(pd.read_parquet(new / parquet.relative_to(old))):
            problems.append(f"{parquet.name}: predictions differ")
    metrics = f"reports/metrics/finediving/{variant}.json"
    ma, mb = (json.loads((side / metrics).read_text()) for side in (old, new))
    ma.pop("provenance", None), mb.pop("provenance", None)
    if ma != mb:
        problems.append(f"{metrics}: numbers differ")
    if not models:
        problems.append("no seed was trained")
    return problems


def _equal(a, b) -> bool:
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _numbers(history) -> list:
    """The per-epoch metrics of a history (its epochs' records without wall-clock fields)."""
    epochs = history.get("epochs", history) if isinstance(history, dict) else history
    return [{k: v for k, v in e.items() if "second" not in k and "time" not in k} for e in epochs]


DETERMINISM = """
import time, torch
from aqa.train.loop import set_determinism
t = time.perf_counter(); set_determinism(0); print(time.perf_counter() - t)
"""

FIRST_LOG = """
import time, numpy as np, torch
from aqa.train.mlflow_model import log_seed_model
from aqa.train.tracking import Tracker

class Direct(torch.nn.Module):
    pairwise = False
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)
    def forward(self, batch):
        return {"score": self.lin(batch["x"]).squeeze(-1)}

class Data:
    def batch(self, rows, with_maps=False):
        return {"x": torch.ones(len(rows), 3)}

tracker = Tracker("sqlite:///mlflow.db", "bench")
run = tracker.start("bench", params={}, tags={})
t = time.perf_counter(); log_seed_model(tracker, run, Direct(), Data(), np.arange(4)); print(time.perf_counter() - t)
"""


def parts(sides: dict[str, Path], bin_dir: Path, rounds: int) -> None:
    """Best in-process seconds of the first set_determinism and log_seed_model, best wall of --list-rules."""
    python = str(bin_dir / "python")
    results: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            side, env = sides[name], env_for(sides[name], bin_dir)
            store = side / "bench-store"
            shutil.rmtree(store, ignore_errors=True)
            store.mkdir()
            results.setdefault((name, "set_determinism"), []).append(
                float(sh([python, "-c", DETERMINISM], side, env).split()[-1]))
            results.setdefault((name, "first log_seed_model"), []).append(
                float(sh([python, "-c", FIRST_LOG], store, env).split()[-1]))
            results.setdefault((name, "snakemake --list-rules"), []).append(
                timed([str(bin_dir / "snakemake"), "--list-rules"], side, env)[0])
    for part in ("set_determinism", "first log_seed_model", "snakemake --list-rules"):
        old, new = min(results[("old", part)]), min(results[("new", part)])
        print(f"{part:24s} best old {old:6.3f} s  new {new:6.3f} s  ({old - new:+.3f} s)")
    print(f"load average at the end: {os.getloadavg()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clone", type=Path, help="a checkout after `make repro` (only read)")
    ap.add_argument("scratch", type=Path, help="new folder for the two projects")
    ap.add_argument("--old-ref", default="2dd9483")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variant", default="fr-dn")
    ap.add_argument("--bin", type=Path, default=Path(sys.executable).parent,
                    help="the venv's bin folder (dvc, snakemake, aqa)")
    ap.add_argument("--parts", action="store_true", help="time the fixed costs alone (see above)")
    args = ap.parse_args()
    repo = Path(__file__).resolve().parents[1]
    sides = {"old": args.scratch / "old", "new": args.scratch / "new"}
    build(sides["old"], repo, args.old_ref, args.clone)
    build(sides["new"], repo, None, args.clone)
    if args.parts:
        return parts(sides, args.bin, args.rounds)
    mlflow_db = args.scratch / "mlflow.db"
    shutil.copyfile(args.clone / "mlflow.db", mlflow_db)
    stages = [f"train@{args.variant}", f"evaluate@{args.variant}"]
    results = {(name, stage): [] for name in sides for stage in stages}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for name in order:
            side, env = sides[name], env_for(sides[name], args.bin)
            reset(side, mlflow_db)
            sh([str(args.bin / "aqa"), "check-params", "--params", "params.yaml", "--out", ".aqa/params.checked",
                "--inputs", ".aqa/inputs"], side, env)
            for stage in stages:
                wall, cpu = timed([str(args.bin / "dvc"), "repro", "-f", "-s", stage], side, env)
                results[(name, stage)].append((wall, cpu))
                print(f"round {r + 1} {name:3s} {stage:16s} wall {wall:6.2f} s  cpu {cpu:6.2f} s", flush=True)
    print(f"load average at the end: {os.getloadavg()}")
    for stage in stages:
        old = min(results[("old", stage)]), min(results[("new", stage)])
        (ow, oc), (nw, nc) = old
        print(f"{stage:16s} best wall old {ow:6.2f} new {nw:6.2f} s ({ow - nw:+.2f} s, {ow / nw:.2f}x); "
              f"best cpu old {oc:6.2f} new {nc:6.2f} s ({oc - nc:+.2f} s)")
    problems = same_numbers(sides["old"], sides["new"], args.variant)
    print("same numbers on both sides" if not problems else "DIFFERENT: " + "; ".join(problems))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
