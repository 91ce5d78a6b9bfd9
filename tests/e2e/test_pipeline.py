"""The whole DAG on tiny data, both datasets (FineDiving and the MTL-AQA stand-in): `dvc repro`
(each stage running its Snakemake target), a second `dvc repro` that does nothing, `dvc metrics
show` (the summary) and `dvc plots show`, the figures of every variant, and `snakemake -c2
extract_frames` alone."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
               MLFLOW_TRACKING_URI=f"sqlite:///{cwd / 'mlflow.db'}", GIT_AUTHOR_NAME="t",
               GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def pipeline_copy(tmp_path: Path) -> tuple[Path, Path]:
    """(root, weights): a copy of the pipeline definition in tmp_path/project, and random I3D
    weights to give as a user-supplied state dict (no download in tests)."""
    from aqa.models.i3d import InceptionI3d

    root = tmp_path / "project"
    root.mkdir()
    for name in ("Snakefile", "dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    for name in ("workflow", "src"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    weights = tmp_path / "random_i3d.pt"
    torch.manual_seed(0)
    torch.save(InceptionI3d().state_dict(), weights)
    return root, weights


def commit_project(root: Path, params: dict, message: str) -> Path:
    """params.yaml written, then a fresh git + DVC repository of root committed."""
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], root)
    _run([str(BIN / "dvc"), "init", "-q"], root)
    _run([str(BIN / "dvc"), "config", "core.analytics", "false"], root)
    _run(["git", "add", "-A"], root)
    _run(["git", "commit", "-qm", message], root)
    return root


@pytest.fixture()
def project(tmp_path, tiny_params) -> Path:
    """A copy of the pipeline definition in a fresh git + DVC repository with tiny params."""
    root, weights = pipeline_copy(tmp_path)
    p = tiny_params
    # Enough dives that every split (train, validation, test) has several.
    p["synthesize_videos"]["finediving"]["dives_per_video"] = 6
    p["synthesize_videos"]["mtl_aqa"]["dives_per_video"] = 6
    p["extract_features"]["flip_view"] = False
    p["fetch_i3d"]["weights_path"] = str(weights)
    # pairwise (fr, tsa, and CoRe with its groups from the pool) and a direct method (MUSDL)
    p["train"]["variants"] = {"fr": {"method": "fr"}, "tsa": {"method": "tsa"}, "core": {"method": "core"},
                              "musdl": {"method": "musdl", "train": {"lr": 1e-4}}}
    p["train"]["exemplar_modes"] = ["dn"]
    p["datasets"] = {"run": ["finediving", "mtl_aqa"], "variants": {"finediving": ["fr", "tsa", "core", "musdl"],
                                                                   "mtl_aqa": ["fr"]}}
    # MUSDL on MTL-AQA as the default trains it: dn-only, through the train_dn_mtl_aqa / evaluate_dn_mtl_aqa groups
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": ["musdl"]}
    return commit_project(root, p, "tiny pipeline")


def test_dvc_repro_runs_the_dag_then_does_nothing(project):
    dvc = str(BIN / "dvc")
    _run([dvc, "repro"], project)

    for dataset, variant in (("finediving", "fr-dn"), ("finediving", "tsa-dn"), ("finediving", "core-dn"),
                             ("finediving", "musdl-dn"), ("mtl_aqa", "fr-dn"), ("mtl_aqa", "musdl-dn")):
        metrics = json.loads((project / f"reports/metrics/{dataset}/{variant}.json").read_text())
        assert metrics["variant"] == variant and metrics["dataset"] == dataset
        assert {"honest", "paper"} <= set(metrics)
        assert metrics["scoring"] == ("direct" if variant == "musdl-dn" else "voting")
    assert not (project / "reports/metrics/mtl_aqa/tsa-dn.json").exists()  # TSA needs step labels
    with open(project / "reports/tables/finediving_table2.csv", newline="") as f:
        table2 = {(r[0], r[1]): r[2:] for r in csv.reader(f)}
    for method in ("MUSDL", "CoRe", "TSA"):     # w/ DN only in this params
        honest = table2[(method, "ours, honest")]
        assert honest[:2] == ["not run"] * 2 and " ± " in honest[2], honest
    for name in ("finediving_table2", "finediving_table3", "finediving_table4", "mtl_aqa",
                 *(f"fineparser_table{n}" for n in range(1, 6))):
        for ext in ("md", "csv", "tex"):
            assert (project / f"reports/tables/{name}.{ext}").stat().st_size > 0
    assert "| FineParser | ours: not run (params do not train fineparser" in \
        (project / "reports/tables/fineparser_table1.md").read_text()   # no FineParser variant here
    mtl_table = (project / "reports/tables/mtl_aqa.md").read_text()
    assert "| F+R | ours, honest |" in mtl_table and "| TSA | ours: not applicable (needs step labels" in mtl_table
    assert (project / "data/raw/mtl_aqa/annotations/final_annotations_dict_with_dive_number.pkl").is_file()
    assert (project / "dvc.lock").exists()
    lock = (project / "dvc.lock").read_text()
    assert "train_dn_mtl_aqa@musdl-dn:" in lock and "evaluate_dn_mtl_aqa@musdl-dn:" in lock

    again = _run([dvc, "repro"], project)
    assert "Running stage" not in again, again
    assert "up to date" in again.lower()

    # make_figures: every variant's figures and plot data, the summary DVC shows in 160 columns
    trained = {"finediving": ("fr-dn", "tsa-dn", "core-dn", "musdl-dn"), "mtl_aqa": ("fr-dn", "musdl-dn")}
    for dataset, variants in trained.items():
        for variant in variants:
            for kind in ("curves", "test"):
                assert (project / f"reports/figures/{dataset}/{kind}/{variant}.png").stat().st_size > 0
            for kind in ("history", "seeds", "test"):
                assert (project / f"reports/plots/{kind}/{dataset}/{variant}.csv").stat().st_size > 0
    assert (project / "reports/figures/finediving/segmentation.png").is_file()
    assert (project / "reports/figures/finediving/table4.png").is_file()
    assert not (project / "reports/figures/mtl_aqa/segmentation.png").exists()   # no method there segments
    shown = _run([dvc, "metrics", "show"], project)
    assert max(len(line) for line in shown.splitlines()) <= 160, shown
    for dataset, variants in trained.items():
        for variant in variants:
            assert f"reports/summary/{dataset}/{variant}.json" in shown
    out = _run([dvc, "plots", "show", "--json", "--split"], project)   # (stdout, then any stderr)
    plots = json.JSONDecoder().raw_decode(out[out.index("{"):])[0]
    assert not plots.get("errors") and "reports/plots/test/mtl_aqa/musdl-dn.csv" in plots["data"]

    # Snakemake alone rebuilds one stage (every dataset's part) from the same rules.
    frames = project / "data/interim/frames"
    before = sorted(p.relative_to(frames) for p in frames.rglob("*.jpg"))
    shutil.rmtree(frames)
    _run([str(BIN / "snakemake"), "-c2", "extract_frames"], project)
    after = sorted(p.relative_to(frames) for p in frames.rglob("*.jpg"))
    assert before and after == before
