"""A tiny trained-and-evaluated project for the make_figures tests: real `aqa train` and `aqa
evaluate` of F+R (no segmentation) and TSA (segmentation, Table 4) w/ DN, two seeds, on the
generated cache of train_helpers, laid out as the pipeline lays it out (models/, reports/)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

from aqa.params import load_params
from tiny_params import shrink
from train_helpers import small_train_params, sqlite_store, tiny_dataset, write_params

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VARIANTS = ("fr-dn", "tsa-dn")


def run(args: list, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def figures_params() -> dict:
    p = small_train_params(shrink(copy.deepcopy(load_params(REPO / "params.yaml"))), seeds=[0, 1])
    p["train"]["variants"] = {k: p["train"]["variants"][k] for k in ("fr", "tsa")}
    p["train"]["exemplar_modes"] = ["dn"]
    p["datasets"] = {"run": ["finediving"], "variants": {"finediving": ["fr", "tsa"], "mtl_aqa": []}}
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": []}
    p["make_report"]["table4_variant"] = "tsa"
    return p


def trained_project(root: Path) -> Path:
    """`root` with params.yaml, models/finediving/<v>, reports/{metrics,predictions}/finediving/<v>."""
    root.mkdir(parents=True)
    dives, cache, _ = tiny_dataset(root / "data", 24)
    params = write_params(root / "params.yaml", figures_params())
    uri = sqlite_store(root)
    for variant in VARIANTS:
        models = root / "models/finediving" / variant
        run([BIN / "aqa", "train", "--params", params, "--variant", variant, "--features", cache,
             "--annotations", dives, "--out", models, "--tracking-uri", uri], root)
        run([BIN / "aqa", "evaluate", "--params", params, "--variant", variant, "--models", models,
             "--features", cache, "--annotations", dives, "--metrics", root / f"reports/metrics/finediving/{variant}.json",
             "--predictions", root / f"reports/predictions/finediving/{variant}", "--tracking-uri", uri], root)
    return root


def make_figures(root: Path, out: str = "reports", ok: bool = True) -> subprocess.CompletedProcess:
    return run([BIN / "aqa", "make-figures", "--params", root / "params.yaml", "--metrics", root / "reports/metrics",
                "--predictions", root / "reports/predictions", "--models", root / "models",
                "--figures", root / out / "figures", "--plots", root / out / "plots",
                "--summary", root / out / "summary"], root, ok)


def dvc_project(root: Path) -> Path:
    """`root` (made by trained_project + make_figures) as a git + DVC repository with the project's
    dvc.yaml (its top-level plots and metrics) and the plot template, everything committed."""
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    (root / "workflow/plots").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "workflow/plots/by_seed.json", root / "workflow/plots/by_seed.json")
    run(["git", "init", "-q"], root)
    run([BIN / "dvc", "init", "-q"], root)
    run([BIN / "dvc", "config", "core.analytics", "false"], root)
    (root / ".gitignore").write_text("data/\nmodels/\nmlflow.db\n")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "figures"], root)
    return root
