"""Time one training epoch and one epoch's evaluation (val + test + test-gt) per method.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_train_eval.py --methods tsa fsr
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_train_eval.py --methods tsa --compare-ref HEAD --rounds 3

Builds (once, in --workdir) a random feature cache of --dives dives with the real shapes
(pooled (2, 9, 1024), maps (2, 9, 1024, 4, 4), fp16), splits it as params.yaml does (test
fraction 0.3, validation 0.2 of train), and times, for each method with its default config:
  - `train_epoch` (params' batch size, flip views, ground-truth transitions as the first epochs);
  - `evaluate_epoch` (M = params' evaluate.num_exemplars voting on val, test and test-gt).
The thread count is torch's after `resolve_device` (OMP_NUM_THREADS, default 1). The best of
--repeats is printed, wall and process CPU time ("cpu"), and the load average before and after.

--compare-ref REF times the package source of git REF ("before") against the working tree
("after"): each round runs one child process per side, alternating, so both see the same
machine load, and prints per-round and median after/before speed-ups. It also times the
start-up of `aqa evaluate --help` and of importing the train and evaluate stages per side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STARTUP = {  # what a process of the stage pays before it trains or evaluates anything
    "evaluate --help": [str(Path(sys.executable).with_name("aqa")), "evaluate", "--help"],
    "import train+evaluate": [sys.executable, "-c", "import aqa.train.run, aqa.evaluate.run"],
}


def make_data(workdir: Path, num_dives: int):
    sys.path.insert(0, str(REPO / "tests"))
    from aqa.train.data import load_dive_data
    from train_helpers import make_dives, write_cache, write_dives

    dives = workdir / "annotations" / "finediving" / "dives.parquet"
    cache = workdir / f"features{num_dives}"
    rows = make_dives(num_dives, num_actions=6, seed=0)
    if not (cache / "manifest.json").exists():
        write_dives(dives, rows)
        write_cache(cache, rows, feature_dim=1024)
    return load_dive_data(dives, cache)


def best_time(fn, repeats: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of `repeats` calls. The process's CPU time is the steadier
    figure on a shared machine: a busy neighbour stretches the wall time, barely the work."""
    times = []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - w0, time.process_time() - c0))
    return min(times)


def load_train_eval_params() -> dict:
    """params.yaml's train and evaluate sections, unvalidated: an older ref's schema may not
    know keys that other stages have added since."""
    import yaml

    return yaml.safe_load((REPO / "params.yaml").read_text())


def measure(args) -> dict[str, dict[str, float]]:
    """{method: {"train": s, "train cpu": s, "eval": s, "eval cpu": s}} with the `aqa` on sys.path."""
    import torch

    from aqa.train.loop import SeedRun, build, evaluate_epoch, make_optimizer, resolve_device, train_epoch
    from aqa.train.run import split_rows

    params = load_train_eval_params()
    train_cfg = {**params["train"], "device": "cpu"}
    device = resolve_device("cpu")
    data = make_data(args.workdir, args.dives)
    pool, val, test = split_rows(data, train_cfg)
    if not args.child:
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, OMP_NUM_THREADS="
              f"{os.environ.get('OMP_NUM_THREADS')}, load {os.getloadavg()}")
        print(f"{pool.size} pool, {val.size} val, {test.size} test dives; M = {params['evaluate']['num_exemplars']}")
    out = {}
    for method in args.methods:
        run = SeedRun(variant=f"{method}-dn", method=method, model_kwargs={}, mode="dn", seed=0,
                      train_cfg=train_cfg, eval_cfg=params["evaluate"])
        torch.manual_seed(0)
        model = build(run.config(), device)
        out[method] = {}
        if not args.skip_train:
            opt = make_optimizer(model, train_cfg)
            scaler = torch.amp.GradScaler("cuda", enabled=False)
            out[method]["train"], out[method]["train cpu"] = best_time(
                lambda: train_epoch(model, opt, scaler, data, pool, run, 0), args.repeats)
        if not args.skip_eval:
            out[method]["eval"], out[method]["eval cpu"] = best_time(
                lambda: evaluate_epoch(model, data, pool, val, test, run), args.repeats)
        if not args.child:
            print(method + ": " + ", ".join(f"{k} {v:.2f} s" for k, v in out[method].items()), flush=True)
    return out


# --------------------------------------------------------------------------- before / after


def export_src(ref: str, dest: Path) -> Path:
    """The package source (src/) of git `ref`, unpacked under dest; returns the src folder."""
    blob = subprocess.run(["git", "archive", ref, "src"], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def child_env(src: Path) -> dict[str, str]:
    """This environment with `src` first on the path, so `import aqa` is that side's package."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}


def run_child(src: Path, args) -> dict[str, dict[str, float]]:
    cmd = [sys.executable, __file__, "--child", "--workdir", str(args.workdir), "--dives", str(args.dives),
           "--repeats", str(args.repeats), "--methods", *args.methods]
    cmd += ["--skip-train"] if args.skip_train else []
    cmd += ["--skip-eval"] if args.skip_eval else []
    proc = subprocess.run(cmd, env=child_env(src), capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def startup_time(src: Path, cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=child_env(src), capture_output=True, check=True)
    return time.perf_counter() - t0


def compare(args) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ref-") as tmp:
        sides = {"before": export_src(args.compare_ref, Path(tmp)), "after": REPO / "src"}
        make_data(args.workdir, args.dives)  # build the cache once, outside the timed children
        print(f"before = src of {args.compare_ref}, after = working tree; {args.rounds} rounds, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load {os.getloadavg()}", flush=True)
        times: dict[str, dict[str, list[float]]] = {s: {} for s in sides}
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]  # alternate who goes first
            for side in order:
                for label, cmd in STARTUP.items():
                    times[side].setdefault(label, []).append(startup_time(sides[side], cmd))
                for method, phases in run_child(sides[side], args).items():
                    for phase, t in phases.items():
                        times[side].setdefault(f"{method} {phase}", []).append(t)
            print(f"round {r + 1}: " + "; ".join(
                f"{k} {times['before'][k][-1]:.2f} -> {times['after'][k][-1]:.2f} s" for k in times["after"]),
                flush=True)
        print(f"load after {os.getloadavg()}")
        print("| | before (best) | after (best) | speed-up (median of rounds) |\n|---|---|---|---|")
        for key in times["after"]:
            b, a = times["before"][key], times["after"][key]
            ratio = statistics.median(x / y for x, y in zip(b, a))
            print(f"| {key} | {min(b):.2f} s | {min(a):.2f} s | {ratio:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_train_eval"))
    ap.add_argument("--dives", type=int, default=120)
    ap.add_argument("--methods", nargs="+", default=["tsa", "fsr"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--compare-ref", metavar="REF", help="also time git REF's package source, interleaved")
    ap.add_argument("--rounds", type=int, default=3, help="before/after rounds with --compare-ref")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one side of --compare-ref
    args = ap.parse_args()
    if args.compare_ref:
        compare(args)
        return
    result = measure(args)
    if args.child:
        print(json.dumps(result))
    else:
        print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
