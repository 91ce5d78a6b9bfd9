"""Snakemake reruns a stage on what DVC reruns it on: its code files and its params keys.

workflow/rules/common.smk holds one table of each stage's code and params keys, which every rule
of the stage takes as inputs; these tests keep it equal to dvc.yaml's deps and params, and check
the params files (aqa.params_digest) change exactly when the stage's keys do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from snakemake.api import OutputSettings, ResourceSettings, SnakemakeApi

from aqa import params_digest

REPO = Path(__file__).resolve().parents[3]
DATA_ROOTS = ("data/", "models", "reports/", ".aqa/")   # data deps, not code


@pytest.fixture(scope="module")
def workflow():
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=REPO / "Snakefile", workdir=REPO)
        yield wf._workflow


def _dvc_stages():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: s for name, s in stages.items() if name != "check_params"}


def _stage(dvc_group: str) -> str:
    """train_mtl_aqa, train_dn and train_dn_mtl_aqa run the stage train."""
    return dvc_group.removesuffix("_mtl_aqa").removesuffix("_dn")


def _template(key: str, group: str) -> str:
    """dvc.yaml's key with the table's placeholders (a dataset's train / evaluate group names its
    dataset in full: evaluate_mtl_aqa reads extract_frames.frames_root.mtl_aqa)."""
    dataset = "mtl_aqa" if group.endswith("_mtl_aqa") else "finediving"
    key = key.replace("${item.dataset}", "{dataset}").replace("${item.variant}", "{variant}")
    return key.replace(f".{dataset}", ".{dataset}") if _stage(group) in ("train", "evaluate") else key


def test_the_table_lists_the_code_dvc_yaml_lists(workflow):
    table = workflow.globals["STAGE_CODE"]
    for name, stage in _dvc_stages().items():
        code = [d for d in stage["deps"] if not d.startswith(DATA_ROOTS)]
        assert sorted(table[_stage(name)]) == sorted(code), name
    assert set(table) == {_stage(n) for n in _dvc_stages()}


def test_the_table_lists_the_params_dvc_yaml_lists(workflow):
    table = workflow.globals["STAGE_PARAMS"]
    for name, stage in _dvc_stages().items():
        assert sorted(table[_stage(name)]) == sorted(_template(k, name) for k in stage["params"]), name


def test_every_job_takes_its_stage_code_and_params_file(workflow):
    g = workflow.globals
    jobs = {r.name: r for r in workflow.rules if r.shellcmd is not None}
    assert set(jobs) == {"synthesize_videos_dataset", "extract_frames_video", "convert_annotations_dataset",
                         "fetch_i3d", "extract_features_dataset", "train_variant", "evaluate_variant",
                         "make_report", "make_figures"}
    for name, rule in jobs.items():
        stage = name.removesuffix("_dataset").removesuffix("_video").removesuffix("_variant")
        start, end = rule.input._names["code"]
        code = [str(f) for f in rule.input[start:end]]
        assert code == g["code_files"](stage), name
        # every file of a code folder, as DVC hashes it: an edit of any of them is seen
        assert "src/aqa/metrics.py" in code or stage not in ("train", "evaluate")
        assert any(c.startswith("src/aqa/models/") for c in code) or stage != "train"
        assert "params_file" in rule.input._names, name
        assert not any("section" == k for k in rule.params._names), f"{name} reruns on a whole section"


def test_a_params_file_changes_exactly_when_the_stage_keys_do(tmp_path):
    params = {"train": {"lr": 1e-3, "num_workers": 2, "variants": {"fr": {"method": "fr"}, "tsa": {}}},
              "evaluate": {"k": 1}}
    keys = ["train.lr", "train.variants.fr", "evaluate"]
    path = tmp_path / "train@fr-dn.json"
    assert params_digest.write_if_changed(path, params_digest.stage_values(params, keys), None)
    assert json.loads(path.read_text()) == {"train.lr": 0.001, "train.variants.fr": {"method": "fr"},
                                            "evaluate": {"k": 1}}
    os.utime(path, (1000, 1000))
    for key, value in (("num_workers", 4), ("variants", {"fr": {"method": "fr"}, "tsa": {"x": 1}})):
        params["train"][key] = value     # keys train@fr-dn does not read
        assert not params_digest.write_if_changed(path, params_digest.stage_values(params, keys), None)
    assert path.stat().st_mtime == 1000
    params["train"]["lr"] = 2e-3         # a key it reads
    assert params_digest.write_if_changed(path, params_digest.stage_values(params, keys), None)
    assert path.stat().st_mtime > 1000


def test_a_new_params_file_is_old_when_dvc_lock_records_its_values(tmp_path):
    """A fresh clone: the outputs dvc.lock records were made with these values, so nothing is stale;
    values other than the recorded ones (or a stage DVC never ran) date the file now."""
    lock = yaml.safe_load("stages:\n  train@fr-dn:\n    params:\n      params.yaml:\n        train.lr: 0.001\n")
    recorded = params_digest.locked_values(lock, "train@fr-dn")
    same, other, never = tmp_path / "same.json", tmp_path / "other.json", tmp_path / "never.json"
    params_digest.write_if_changed(same, {"train.lr": 1e-3}, recorded)
    params_digest.write_if_changed(other, {"train.lr": 2e-3}, recorded)
    params_digest.write_if_changed(never, {"train.lr": 1e-3}, params_digest.locked_values(lock, "evaluate@fr-dn"))
    assert same.stat().st_mtime == 0
    assert other.stat().st_mtime > 0 and never.stat().st_mtime > 0
