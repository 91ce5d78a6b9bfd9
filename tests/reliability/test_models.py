"""Faults around models, metrics and tables, injected into a built tiny project and repaired by a
plain `dvc repro` (issue 11: defects 1, 2, 4 and 6 as far as models and metrics go).

Each test asserts what the user sees, that nothing valid was lost, and that the result after the
repair is the one the inputs give (identical to the uninterrupted run where the inputs are).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import torch

from harness import read_params, run, write_params

VARIANT = "fr-dn"                       # the one variant x mode of the tiny project
SEED = Path("models/finediving") / VARIANT / "seed0"
METRICS = Path("reports/metrics/finediving") / f"{VARIANT}.json"
PREDICTIONS = Path("reports/predictions/finediving") / VARIANT / "seed0.parquet"
MTL_SEED = Path("models/mtl_aqa") / VARIANT / "seed0"
MTL_METRICS = Path("reports/metrics/mtl_aqa") / f"{VARIANT}.json"


def _results(root: Path) -> dict[str, bytes]:
    """The files a rebuilt model must reproduce exactly."""
    return {name: (root / name).read_bytes() for name in (METRICS, PREDICTIONS, SEED / "checkpoint.pt",
                                                          SEED / "best_val.pt", SEED / "history.json")}


def _repro(root: Path) -> str:
    out = run(["dvc", "repro"], root)
    return out.stdout + out.stderr


def _stages_run(output: str) -> list[str]:
    """The stages a `dvc repro` ran, without the params check that runs every time."""
    return [s for s in re.findall(r"Running stage '([^']+)'", output) if s != "check_params"]


def _train_log(root: Path) -> str:
    return (root / "logs" / "train" / "finediving" / f"{VARIANT}.log").read_text()


def test_changed_score_retrains_and_reevaluates(built_project):
    from aqa.data.finediving import read_finediving, write_finediving
    from aqa.provenance import annotations_digest

    root = built_project
    before = _results(root)
    raw = root / "data/raw/finediving/annotations"
    ann = read_finediving(raw)
    key = ann.train_keys[0]
    ann.dives[key] = dataclasses.replace(ann.dives[key], dive_score=ann.dives[key].dive_score + 9.0)
    write_finediving(ann, raw)
    mtl_before = {p: (root / p).read_bytes() for p in (MTL_METRICS, MTL_SEED / "checkpoint.pt")}
    run(["dvc", "commit", "-f", "synthesize_videos@finediving"], root)     # the user's edit of the annotations
    _repro(root)

    # the training starts from the old model (DVC deleted the folder, Snakemake re-created it empty)
    assert f"started from {SEED.parent} as dvc.lock records it (DVC's cache)" in _train_log(root)
    assert "made from other annotations" in _train_log(root)
    # the feature stage ran for the new dives.parquet and found every dive in the old cache
    assert re.search(r"\d+ already cached, 0 to compute",
                     (root / "logs/extract_features/finediving.log").read_text())
    after = _results(root)
    assert after[SEED / "checkpoint.pt"] != before[SEED / "checkpoint.pt"]
    old = torch.load(root / SEED / "checkpoint.pt", weights_only=True)
    assert old["provenance"]["annotations"] == annotations_digest(
        root / "data/processed/annotations/finediving/dives.parquet")
    metrics = json.loads((root / METRICS).read_text())
    assert metrics["provenance"]["inputs"]["annotations"] == old["provenance"]["annotations"]
    assert {p: (root / p).read_bytes() for p in mtl_before} == mtl_before   # the other dataset is untouched
    assert _stages_run(_repro(root)) == []


def test_truncated_checkpoint_retrains_to_the_same_result(built_project):
    root = built_project
    work = Path(".aqa/work") / SEED      # where training resumes (aqa.workdir)
    before = _results(root)
    # the output damaged: DVC restores the model folder from its cache, nothing trains
    ckpt = root / SEED / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:2048])
    output = _repro(root)
    assert f"Stage 'train@{VARIANT}' is cached - skipping run" in output and _stages_run(output) == [], output
    assert _results(root) == before
    # the checkpoint training resumes from damaged (a killed run's work folder), and the stage
    # run: the seed trains afresh
    shutil.copytree(root / SEED.parent, root / work.parent)
    path = root / work / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:2048])
    run(["dvc", "repro", "--force", "--single-item", f"train@{VARIANT}"], root)
    log = _train_log(root)
    assert f"{work / 'checkpoint.pt'}: damaged, truncated or not a checkpoint" in log
    assert _results(root) == before
    # a model folder of the uninterrupted run's bytes, so nothing after it runs again
    assert _stages_run(_repro(root)) == []


def test_damaged_best_val_is_named_by_evaluate_and_repaired_by_repro(built_project):
    root = built_project
    before = _results(root)
    best = root / SEED / "best_val.pt"
    best.write_bytes(b"\0" * len(best.read_bytes()))
    by_hand = run(["aqa", "evaluate", "--variant", VARIANT, "--models", str(SEED.parent),
                   "--features", "data/processed/features/finediving/i3d",
                   "--annotations", "data/processed/annotations/finediving/dives.parquet",
                   "--metrics", str(METRICS), "--predictions", str(PREDICTIONS.parent)], root, check=False)
    assert by_hand.returncode != 0
    errors = [line for line in by_hand.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "best_val.pt" in errors[0] and f"dvc repro train@{VARIANT}" in errors[0]
    assert "Traceback" not in by_hand.stderr
    assert (root / METRICS).read_bytes() == before[METRICS]         # nothing written from a damaged model
    _repro(root)                                                     # the changed model folder reruns train
    assert _results(root) == before


def test_report_ignores_old_metrics_of_variants_params_do_not_train(built_project):
    """The issue's case: an old 3-seed metrics file of another variant x mode in reports/metrics."""
    root = built_project
    stale = json.loads((root / METRICS).read_text())
    stale.update(variant="tsa-nodn", method="tsa", exemplar_mode="nodn", seeds=[0, 1, 2])
    stale["honest"]["rho"] = {"mean": 0.987654, "std": 0.0}
    (root / "reports/metrics/finediving/tsa-nodn.json").write_text(json.dumps(stale))
    _repro(root)
    tables = "".join((root / f"reports/tables/finediving_table{n}.md").read_text() for n in (2, 3, 4))
    assert "0.9877" not in tables
    assert "3 seed(s)" not in tables and "1 seed(s) (0)" in tables


def test_table4_variant_that_is_not_trained_stops_repro_in_one_line(built_project):
    root = built_project
    tables = {p.name: p.read_bytes() for p in (root / "reports/tables").iterdir()}
    params = read_params(root)
    params["make_report"]["table4_variant"] = "nonexistent"
    write_params(root, params)
    out = run(["dvc", "repro"], root, check=False)
    assert out.returncode != 0
    assert "make_report.table4_variant" in out.stdout + out.stderr
    assert {p.name: p.read_bytes() for p in (root / "reports/tables").iterdir()} == tables


def test_run_side_file_is_outside_the_ledger(built_project):
    root = built_project
    side = root / SEED / "run.json"
    info = json.loads(side.read_text())
    assert info["mlflow_run_id"] and len(info["seconds"]) == 2
    side.write_text(json.dumps({**info, "mlflow_run_id": "another"}))
    status = run(["dvc", "status"], root).stdout
    assert "train@" not in status and str(SEED.parent) not in status, status
    assert _stages_run(_repro(root)) == []
