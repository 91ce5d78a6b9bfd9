"""Cost of logging one seed's model as an MLflow model (aqa.train.mlflow_model.log_seed_model), three
times per variant, on the trained models of a finished default run, into a throw-away store.

    python benchmarks/bench_log_model.py <project root> musdl-nodn core-dn tsa-dn fr-dn
"""
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from aqa.train.data import load_dive_data
from aqa.train.checkpoint import load_checkpoint
from aqa.train.loop import build
from aqa.train.mlflow_model import log_seed_model
from aqa.train.tracking import Tracker
from aqa.params import load_params
from aqa.train.run import split_rows

R = Path(sys.argv[1])   # a project root after `make repro` (its params, features and models)
params = load_params(R / "params.yaml")
dev = torch.device("cpu")
t = time.perf_counter()
data = load_dive_data(R / "data/processed/annotations/finediving/dives.parquet", R / "data/processed/features/finediving/i3d", dev)
print(f"load data {time.perf_counter()-t:.1f}s")
_, _, test = split_rows(data, params["train"])
root = Path(tempfile.mkdtemp(prefix="u3-bench-"))
tracker = Tracker(f"sqlite:///{root}/mlflow.db", "finediving")
for variant in sys.argv[2:]:
    best = load_checkpoint(R / f"models/finediving/{variant}/seed0/best_val.pt", map_location=dev)
    model = build(best["config"], dev); model.load_state_dict(best["model"])
    run = tracker.start(variant, params={}, tags={})
    times = []
    for i in range(3):
        t = time.perf_counter()
        log_seed_model(tracker, run, model, data, test)
        times.append(time.perf_counter() - t)
    size = sum(f.stat().st_size for f in (root / "mlartifacts").rglob("*") if f.is_file())
    print(f"{variant}: log_seed_model {', '.join(f'{x:.2f}' for x in times)} s; artefacts so far {size/1e6:.1f} MB")
    shutil.rmtree(root / "mlartifacts")
