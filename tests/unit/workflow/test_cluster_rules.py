"""The Snakefile's rules ask a cluster for what params' `cluster` section gives their stage, and
the small ones stay local; the section is read by no stage (dvc.yaml tracks none of it)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import yaml
from dvc.repo import Repo
from snakemake.api import OutputSettings, ResourceSettings, SnakemakeApi

from aqa.cluster import CLUSTER_STAGES, job_resources

REPO = Path(__file__).resolve().parents[3]
LOCAL = {"convert_annotations_dataset", "fetch_i3d", "make_report", "make_figures"}


def _stage(rule_name: str) -> str:
    for suffix in ("_dataset", "_video", "_variant"):
        if rule_name.endswith(suffix):
            return rule_name[: -len(suffix)]
    return rule_name


def _rules(root: Path, cores: int = 1):
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=cores), snakefile=root / "Snakefile", workdir=root)
        return list(wf._workflow.rules), set(wf._workflow._localrules)


def test_each_rule_asks_for_its_stage_resources_from_params(tmp_path, repo_params):
    p = copy.deepcopy(repo_params)
    p["cluster"].update(partition="cpu", gpu_partition="gpu", account="lab", gpu_model="a100")
    # distinct values per stage, so a rule reading another stage's entry is caught
    for i, stage in enumerate(CLUSTER_STAGES):
        p["cluster"]["jobs"][stage] = {"threads": 2 + i, "mem_mb": 1000 * (i + 1), "runtime": 10 + i,
                                       "gpus": int(stage in ("extract_features", "train"))}
    root = tmp_path / "project"
    shutil.copytree(REPO / "workflow", root / "workflow")
    shutil.copy(REPO / "Snakefile", root / "Snakefile")
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))

    rules, local = _rules(root, cores=64)
    assert local == LOCAL
    commands = {r.name: r for r in rules if r.shellcmd is not None}
    on_cluster = {name for name in commands if name not in local}
    assert {_stage(n) for n in on_cluster} == set(CLUSTER_STAGES)
    for name in on_cluster:
        rule, stage = commands[name], _stage(name)
        declared = {k: v.value for k, v in rule.resources.items() if not k.startswith("_") and k != "tmpdir"}
        assert declared == job_resources(p, stage), name
        assert rule.resources["_cores"].value == p["cluster"]["jobs"][stage]["threads"], name
    # a GPU job goes to the GPU partition with the model asked; the others to the general one
    assert {k: v.value for k, v in commands["train_variant"].resources.items() if k.startswith(("gpu", "slurm"))} == \
        {"gpu": 1, "gpu_model": "a100", "slurm_partition": "gpu", "slurm_account": "lab"}
    assert commands["evaluate_variant"].resources["slurm_partition"].value == "cpu"
    assert "gpu" not in commands["evaluate_variant"].resources


def test_no_stage_tracks_the_cluster_section():
    """Resources change where and how fast a job runs, not its outputs: editing them re-runs nothing."""
    with Repo(str(REPO)) as repo:
        tracked = [(s.name, key) for s in repo.index.stages for dep in s.params for key in dep.params]
    assert tracked and not [(name, key) for name, key in tracked if key.split(".")[0] == "cluster"]


def test_the_slurm_profile_leaves_resources_to_params():
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert not {"default-resources", "set-resources", "set-threads", "cores"} & set(profile), profile
    # sacct needs SLURM's accounting database; without it the plugin would wait for ever
    assert profile["slurm-status-command"] == "squeue"


def test_the_cluster_group_pins_the_plugin():
    import tomllib

    group = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["cluster"]
    names = {req.split("==")[0] for req in group}
    assert {"snakemake-executor-plugin-slurm", "snakemake-executor-plugin-slurm-jobstep"} == names
    assert all(req.count("==") == 1 for req in group), group
