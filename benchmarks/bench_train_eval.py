"""Time one training epoch and one epoch's evaluation (val + test + test-gt) per method.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train_eval.py --methods tsa fsr

Builds (once, in --workdir) a random feature cache of --dives dives with the real shapes
(pooled (2, 9, 1024), maps (2, 9, 1024, 4, 4), fp16), splits it as params.yaml does (test
fraction 0.3, validation 0.2 of train), and times, for each method with its default config:
  - `train_epoch` (params' batch size, flip views, ground-truth transitions as the first epochs);
  - `evaluate_epoch` (M = params' evaluate.num_exemplars voting on val, test and test-gt).
The thread count is torch's after `resolve_device` (OMP_NUM_THREADS, default 1). The best of
--repeats is printed, and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from aqa.params import load_params  # noqa: E402
from aqa.train.data import load_dive_data  # noqa: E402
from aqa.train.loop import SeedRun, build, evaluate_epoch, make_optimizer, resolve_device, train_epoch  # noqa: E402
from aqa.train.run import split_rows  # noqa: E402
from train_helpers import make_dives, write_cache, write_dives  # noqa: E402


def make_data(workdir: Path, num_dives: int):
    dives = workdir / "annotations" / "finediving" / "dives.parquet"
    cache = workdir / f"features{num_dives}"
    rows = make_dives(num_dives, num_actions=6, seed=0)
    if not (cache / "manifest.json").exists():
        write_dives(dives, rows)
        write_cache(cache, rows, feature_dim=1024)
    return load_dive_data(dives, cache)


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_train_eval"))
    ap.add_argument("--dives", type=int, default=120)
    ap.add_argument("--methods", nargs="+", default=["tsa", "fsr"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-eval", action="store_true")
    args = ap.parse_args()
    params = load_params(REPO / "params.yaml")
    train_cfg = {**params["train"], "device": "cpu"}
    device = resolve_device("cpu")
    data = make_data(args.workdir, args.dives)
    pool, val, test = split_rows(data, train_cfg)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')}, load {os.getloadavg()}")
    print(f"{pool.size} pool, {val.size} val, {test.size} test dives; M = {params['evaluate']['num_exemplars']}")
    for method in args.methods:
        run = SeedRun(variant=f"{method}-dn", method=method, model_kwargs={}, mode="dn", seed=0,
                      train_cfg=train_cfg, eval_cfg=params["evaluate"])
        torch.manual_seed(0)
        model = build(run.config(), device)
        line = [method]
        if not args.skip_train:
            opt = make_optimizer(model, train_cfg)
            scaler = torch.amp.GradScaler("cuda", enabled=False)
            t = best_time(lambda: train_epoch(model, opt, scaler, data, pool, run, 0), args.repeats)
            line.append(f"train epoch {t:.2f} s")
        if not args.skip_eval:
            t = best_time(lambda: evaluate_epoch(model, data, pool, val, test, run), args.repeats)
            line.append(f"eval epoch {t:.2f} s")
        print(", ".join(line), flush=True)
    print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
