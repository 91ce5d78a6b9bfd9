"""Helpers of the reliability suite: build a tiny pipeline project, run and kill its commands.

A project is a real git + DVC repository holding a copy of the pipeline definition (Snakefile,
dvc.yaml, workflow/, src/) with tiny params, run by the real `dvc` and `snakemake` of the venv.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

PIPELINE_FILES = ("Snakefile", "dvc.yaml", ".dvcignore")
PIPELINE_DIRS = ("workflow", "profiles", "src")


def env_for(cwd: Path) -> dict[str, str]:
    """The venv first on PATH (DVC stages call snakemake, rules call aqa), MLflow inside the project."""
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
                MLFLOW_TRACKING_URI=f"sqlite:///{cwd / 'mlflow.db'}", GIT_AUTHOR_NAME="t",
                GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")


def run(args: list[str], cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command in the project; with check, fail the test with its output on a non-zero exit."""
    args = [str(BIN / args[0]) if (BIN / args[0]).exists() else args[0], *args[1:]]
    proc = subprocess.run(args, cwd=cwd, env=env_for(cwd), capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, (f"{' '.join(args)} exited {proc.returncode}:\n"
                                      f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """Start a command in its own process group (so a test can kill -9 the whole tree)."""
    args = [str(BIN / args[0]) if (BIN / args[0]).exists() else args[0], *args[1:]]
    return subprocess.Popen(args, cwd=cwd, env=env_for(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process and every child it started (DVC -> Snakemake -> aqa), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 300, poll: float = 0.2) -> None:
    """Wait until `predicate()` holds; fail if the process ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the process ended (exit {proc.returncode}) before the awaited moment:\n{out[-4000:]}")
        if time.monotonic() > deadline:
            kill_group(proc)
            pytest.fail(f"timed out after {timeout} s waiting")
        time.sleep(poll)


def write_params(root: Path, params: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def read_params(root: Path) -> dict:
    return yaml.safe_load((root / "params.yaml").read_text())


def commit(root: Path, message: str = "change") -> None:
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", message, "--allow-empty"], root)


def make_project(root: Path, params: dict, weights: Path) -> Path:
    root.mkdir(parents=True)
    for name in PIPELINE_FILES:
        if (REPO / name).exists():
            shutil.copy(REPO / name, root / name)
    for name in PIPELINE_DIRS:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    p = params
    for dataset in ("finediving", "mtl_aqa"):   # every split (train, validation, test) gets several
        p["synthesize_videos"][dataset]["dives_per_video"] = 6
    p["extract_features"]["flip_view"] = False
    p["fetch_i3d"]["weights_path"] = str(weights)
    p["train"]["variants"] = {"fr": {"method": "fr"}}
    p["datasets"] = {"run": ["finediving", "mtl_aqa"], "variants": {"finediving": ["fr"], "mtl_aqa": ["fr"]}}
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": []}
    p["train"]["exemplar_modes"] = ["dn"]
    p["make_report"]["table4_variant"] = "fr"
    write_params(root, p)
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    run(["dvc", "config", "core.analytics", "false"], root)
    (root / ".gitignore").write_text("mlflow.db\n")
    commit(root, "tiny pipeline")
    return root


