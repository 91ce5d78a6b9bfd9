"""A logged seed model skips MLflow's requirement-mismatch check (it could only warn) and keeps its pins."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import numpy as np, torch
from pathlib import Path
from mlflow.utils import environment, requirements_utils
from aqa.train.mlflow_model import _requirements, log_seed_model
from aqa.train.tracking import Tracker

class Direct(torch.nn.Module):
    pairwise = False
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)
    def forward(self, batch):
        return {{"score": self.lin(batch["x"]).squeeze(-1)}}

class Data:
    def batch(self, rows, with_maps=False):
        return {{"x": torch.arange(len(rows) * 3, dtype=torch.float32).reshape(len(rows), 3)}}

check = environment.warn_dependency_requirement_mismatches
tracker = Tracker("sqlite:///{root}/mlflow.db", "probe")
run = tracker.start("probe", params={{}}, tags={{}})
log_seed_model(tracker, run, Direct(), Data(), np.arange(4))
written = [p.read_text().split() for p in Path("{root}/mlartifacts").rglob("requirements.txt")]
print(requirements_utils._MODULES_TO_PACKAGES is None, environment.warn_dependency_requirement_mismatches is check,
      written == [_requirements()])
"""


def test_log_skips_the_distribution_scan_and_writes_the_pins(tmp_path):
    # a fresh process: the scan's result is cached in MLflow's module for the life of a process
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=tmp_path)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    scan_skipped, check_restored, pins_written = out.stdout.split()
    assert scan_skipped == "True"      # MLflow's check maps every installed module to its package (~0.5 s)
    assert check_restored == "True"
    assert pins_written == "True"
