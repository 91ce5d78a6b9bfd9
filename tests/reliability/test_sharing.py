"""Sharing results (issue 12, item 3): the default DVC remote, `dvc push` / `dvc pull` into a second
clone, and DVC's run-cache for the feature and training stages (README "Sharing results").

The project is a built tiny pipeline with the repository's own .dvc/config (the default remote
~/.cache/aqa/dvc-remote, here under a temporary HOME) and .gitignore, committed to git as a user
would; the second clone is a real `git clone` of it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness import REPO, commit, read_params, run, write_params

pytestmark = pytest.mark.pipeline

OUTPUT_ROOTS = ("data", "models", "reports")
# .dvcignore'd side files (in no DVC hash), and the .gitignore files DVC writes beside outputs
NOT_SHARED = {"run.json", ".snakemake_timestamp", ".gitignore"}
TRAIN = ("train@fr-dn", "train_mtl_aqa@fr-dn")
FEATURES = ("extract_features@finediving", "extract_features@mtl_aqa")


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def restored(output: str) -> list[str]:
    """The stages `dvc repro` took from the run-cache instead of running them."""
    return re.findall(r"Stage '([^']+)' is cached - skipping run", output)


def outputs(root: Path) -> dict[str, bytes]:
    """Every file of the pipeline's outputs, by relative path (the work folder .aqa/work aside)."""
    found = {}
    for name in OUTPUT_ROOTS:
        top = root / name
        for p in sorted([top] if top.is_file() else top.rglob("*")):
            if p.is_file() and p.name not in NOT_SHARED:
                found[p.relative_to(root).as_posix()] = p.read_bytes()
    assert "models/finediving/fr-dn/seed0/checkpoint.pt" in found, sorted(found)[:20]
    return found


def repro(root: Path) -> str:
    out = run(["dvc", "repro"], root)
    return out.stdout + out.stderr


@pytest.fixture()
def shared(built_project, tmp_path, monkeypatch) -> Path:
    """The built project with the repository's DVC config and .gitignore, committed; HOME is a
    temporary folder, so the default remote lives in this test's own folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    shutil.copy(REPO / ".dvc" / "config", built_project / ".dvc" / "config")
    shutil.copy(REPO / ".gitignore", built_project / ".gitignore")
    # The project was built before it had that .gitignore, so DVC wrote .gitignore files inside
    # folders it now ignores (models/finediving/.gitignore, ...), which the repository never has
    # and a clone would lack; they are part of the `models` dependency of make_figures.
    for path in built_project.glob("[dmr]*/**/.gitignore"):
        if run(["git", "check-ignore", "-q", str(path.relative_to(built_project))], built_project,
               check=False).returncode == 0:
            path.unlink()
    run(["dvc", "repro"], built_project)    # make_figures, for its dependencies' new hashes
    commit(built_project, "built, with the default remote")
    assert "up to date" in run(["dvc", "status"], built_project).stdout
    return built_project


def test_a_second_clone_pulls_and_repro_runs_nothing(shared, tmp_path):
    remote = tmp_path / "home" / ".cache" / "aqa" / "dvc-remote"
    run(["dvc", "push"], shared)
    assert any(remote.rglob("*")), "dvc push wrote nothing into the default remote"

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(shared), str(clone)], tmp_path)
    assert not (clone / "models").exists() and not (clone / ".aqa").exists()
    run(["dvc", "pull"], clone)
    # only the params check runs (its output and the .aqa/inputs links are per checkout, not shared)
    output = repro(clone)
    assert stages_run(output) == ["check_params"] and restored(output) == [], output
    status = run(["dvc", "status"], clone).stdout
    assert "Data and pipelines are up to date" in status, status
    assert outputs(clone) == outputs(shared)


def test_the_run_cache_restores_features_and_models_and_travels_with_push(shared, tmp_path):
    before = outputs(shared)
    params = read_params(shared)
    original = {"lr": params["train"]["lr"], "batch_snippets": params["extract_features"]["batch_snippets"]}

    def set_params(root: Path, lr: float, batch_snippets: int) -> None:
        p = read_params(root)
        p["train"]["lr"], p["extract_features"]["batch_snippets"] = lr, batch_snippets
        write_params(root, p)

    # other params: the feature stage runs (and finds every dive it had), training runs; committed
    set_params(shared, original["lr"] * 2, original["batch_snippets"] * 2)
    changed_run = repro(shared)
    commit(shared, "lr x 2")
    assert set(TRAIN + FEATURES) <= set(stages_run(changed_run)), changed_run
    for dataset in ("finediving", "mtl_aqa"):   # started from the old cache (aqa.workdir), no dive computed
        log = (shared / f"logs/extract_features/{dataset}.log").read_text()
        assert "as dvc.lock records it (DVC's cache)" in log and re.search(r"\d+ already cached, 0 to compute", log), log
    changed = outputs(shared)
    assert changed["models/finediving/fr-dn/seed0/checkpoint.pt"] != before["models/finediving/fr-dn/seed0/checkpoint.pt"]

    # back to the committed params: DVC restores both stages from its run-cache, runs neither
    set_params(shared, **original)
    back = repro(shared)
    assert set(TRAIN + FEATURES) <= set(restored(back)), back
    assert not set(TRAIN + FEATURES) & set(stages_run(back)), back
    assert outputs(shared) == before
    assert "up to date" in run(["dvc", "status"], shared).stdout
    commit(shared, "back")

    # the run-cache travels: `push --run-cache` sends the run records, and DVC 3 sends the outputs
    # only of the commits named (here all); a clone that pulls the records, set to the other params,
    # restores both stages, `repro --pull` fetching the outputs the record names
    run(["dvc", "push", "--run-cache", "--all-commits"], shared)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(shared), str(clone)], tmp_path)
    run(["dvc", "pull", "--run-cache"], clone)
    set_params(clone, original["lr"] * 2, original["batch_snippets"] * 2)
    out = run(["dvc", "repro", "--pull"], clone)
    cloned = out.stdout + out.stderr
    assert set(TRAIN + FEATURES) <= set(restored(cloned)), cloned
    assert not set(TRAIN + FEATURES) & set(stages_run(cloned)), cloned
    assert {k: v for k, v in outputs(clone).items() if k.startswith(("models/", "data/"))} == \
        {k: v for k, v in changed.items() if k.startswith(("models/", "data/"))}
