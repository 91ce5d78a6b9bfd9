"""dvc.yaml and the Snakefile describe the same stages, outputs and params."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo
from snakemake.api import OutputSettings, ResourceSettings, SnakemakeApi

from aqa.data.datasets import DATASETS, FINEDIVING, dvc_stage
from aqa.trained import is_dn_only, trained_pairs

REPO = Path(__file__).resolve().parents[3]
HELPER_RULES = {"all"}
# DVC-only stages: no data stage, they run `aqa` directly rather than a Snakemake target.
LEDGER_STAGES = {"check_params"}
# params sections that are not a stage of their own: `datasets`, which every stage reads, and
# `cluster`, which only the Snakefile reads (each job's cluster resources; aqa.cluster)
SHARED_SECTIONS = {"datasets", "cluster"}


def stage_of(dvc_name: str) -> str:
    """The stage a DVC stage runs: `train_mtl_aqa@core-dn`, `train@tsa-dn` and `train_dn@fineparser-dn`
    are all `train` (each dataset's own groups of per-variant stages, aqa.data.datasets.dvc_stage)."""
    base = dvc_name.split("@")[0]
    for dataset in DATASETS:
        if base.endswith(f"_{dataset}") and dataset != FINEDIVING:
            base = base[: -len(dataset) - 1]
    return base.removesuffix("_dn")


@pytest.fixture(scope="module")
def smk_rules():
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=1),
                          snakefile=REPO / "Snakefile", workdir=REPO)
        yield {r.name: r for r in wf._workflow.rules}


@pytest.fixture(scope="module")
def dvc_stages():
    with Repo(str(REPO)) as repo:
        stages = []
        for stage in repo.index.stages:
            if stage.name in LEDGER_STAGES:
                continue
            stages.append({
                "name": stage.name,
                "cmd": stage.cmd,
                "outs": [str(Path(o.def_path)) for o in stage.outs],
                "params": [key for dep in stage.params for key in dep.params],
            })
        return stages


def _snakemake_call(cmd: str) -> tuple[list[str], str]:
    """The allowed rules and the single target of a stage's snakemake command."""
    words = shlex.split(cmd)
    assert words[0] == "snakemake", f"stage command does not run snakemake: {cmd}"
    sep = words.index("--")
    rules_at = words.index("--allowed-rules")
    allowed = words[rules_at + 1:sep]
    targets = words[sep + 1:]
    assert len(targets) == 1, f"a DVC stage must run exactly one Snakemake target: {cmd}"
    return allowed, targets[0]


def _concrete_outputs(rule, target: str) -> list[str]:
    """The rule's outputs with wildcards filled from `target` (a path or the rule's name)."""
    outputs = [str(o) for o in rule.output]
    if target == rule.name or not rule.wildcard_names:
        return outputs
    for pattern in outputs:
        regex = re.sub(r"\{(\w+)(,[^}]*)?\}", r"(?P<\1>[^/]+)", re.escape(pattern).replace(r"\{", "{").replace(r"\}", "}"))
        m = re.fullmatch(regex, target)
        if m:
            return [re.sub(r"\{(\w+)(,[^}]*)?\}", lambda w: m.group(w.group(1)), p) for p in outputs]
    raise AssertionError(f"target {target} matches no output of rule {rule.name}")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def test_every_stage_is_a_rule_and_every_stage_rule_a_stage(smk_rules, dvc_stages):
    stage_names = {stage_of(s["name"]) for s in dvc_stages}
    params_sections = set(yaml.safe_load((REPO / "params.yaml").read_text())) - SHARED_SECTIONS
    assert stage_names == params_sections, "one name per stage: dvc stages vs params sections"
    missing = stage_names - set(smk_rules)
    assert not missing, f"DVC stages without a Snakemake rule of the same name: {missing}"
    # job rules: one dataset's part of a stage, one video's frames, one variant's training / evaluation
    stage_rules = {n for n in smk_rules if n not in HELPER_RULES
                   and not n.endswith(("_dataset", "_video", "_variant"))}
    assert stage_rules == stage_names


def test_outputs_agree(smk_rules, dvc_stages):
    for stage in dvc_stages:
        allowed, target = _snakemake_call(stage["cmd"])
        unknown = set(allowed) - set(smk_rules)
        assert not unknown, f"{stage['name']}: --allowed-rules names unknown rules {unknown}"
        target_rule = next((smk_rules[r] for r in allowed if r == target), None) or next(
            smk_rules[r] for r in allowed if smk_rules[r].wildcard_names)
        produced = _concrete_outputs(target_rule, target)
        for out in produced:
            assert any(_under(out, o) for o in stage["outs"]), (
                f"{stage['name']}: Snakemake output {out} is not under any DVC out {stage['outs']}")
        for out in stage["outs"]:
            assert any(_under(p, out) or _under(out, p) for p in produced) or target_rule.name == stage["name"], (
                f"{stage['name']}: DVC out {out} is made by no rule output {produced}")


def test_params_agree(smk_rules, dvc_stages):
    """Each stage tracks its own section; the rules rerun on exactly the keys dvc.yaml lists
    (their params file: tests/unit/workflow/test_stage_inputs.py)."""
    for stage in dvc_stages:
        base = stage_of(stage["name"])
        sections = {p.split(".")[0] for p in stage["params"]}
        assert base in sections, f"{stage['name']}: DVC does not track its own params section {base}"


def test_every_repro_checks_the_params_first():
    import networkx as nx

    with Repo(str(REPO)) as repo:
        graph, stages = repo.index.graph, {s.name: s for s in repo.index.stages}
        check = stages["check_params"]
        assert shlex.split(check.cmd)[:2] == ["aqa", "check-params"]
        # it re-runs whenever what its verdict depends on changes
        deps = {str(Path(d.def_path)) for d in check.deps}
        assert {"params.yaml", "src/aqa/params.py", "workflow/schemas/params.schema.yaml"} <= deps
        for stage in stages.values():
            # edges point from a stage to the stages it depends on
            assert stage is check or check in nx.descendants(graph, stage), (
                f"{stage.name} can run before check_params")


def test_each_dataset_runs_every_stage_under_its_own_paths(dvc_stages, repo_params):
    """Data stages once per dataset of datasets.run; train / evaluate once per variant the dataset
    lists and exemplar mode, and for no other variant; every output under the dataset's paths."""
    by_name = {s["name"]: s for s in dvc_stages}
    run = repo_params["datasets"]["run"]
    assert set(run) == {FINEDIVING, "mtl_aqa"}, "the default runs both datasets"
    expected = set()
    for dataset in run:
        data = {f"{stage}@{dataset}" for stage in
                ("synthesize_videos", "extract_frames", "convert_annotations", "extract_features")}
        models = {f"{dvc_stage(stage, dataset, is_dn_only(repo_params, dataset, v))}@{v}-{m}"
                  for stage in ("train", "evaluate") for v, m in trained_pairs(repo_params, dataset)}
        for name in data | models:
            outs = by_name[name]["outs"]
            assert outs and all(f"/{dataset}/" in f"/{o}/" for o in outs), (name, outs)
        expected |= data | models
    per_dataset = {n for n in by_name if "@" in n}
    assert per_dataset == expected
    assert not any(n.startswith("train_mtl_aqa@tsa") for n in by_name), "TSA needs step labels"
    # FineParser's main model w/ DN only, in its own group (a matrix cannot leave a mode out)
    assert {"train_dn@fineparser-dn", "evaluate_dn@fineparser-dn"} <= set(by_name)
    assert not [n for n in by_name if n.endswith("@fineparser-nodn") or n.startswith(("train@fineparser", "train_dn@fp_"))]


def test_the_snakefile_names_each_variant_stage_as_dvc_does(smk_rules, dvc_stages):
    """Every train / evaluate stage of every DVC group (train_dn included) is a job of the Snakefile's
    trained variants, and its params file carries the DVC stage's name (what dvc.lock records)."""
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=REPO / "Snakefile", workdir=REPO)
        g = wf._workflow.globals
        per_variant = {s["name"] for s in dvc_stages if stage_of(s["name"]) in ("train", "evaluate")}
        from_smk = {Path(g["params_file_of"](stage, dataset, name)).stem
                    for dataset in g["DATASETS"] for name in g["trained_variants"](dataset)
                    for stage in ("train", "evaluate")}
    assert per_variant == from_smk
    assert "train_dn@fineparser-dn" in from_smk


def test_params_select_the_datasets(tmp_path, repo_params):
    """datasets.run = [finediving] (MTL-AQA listing no variant): no stage and no job of MTL-AQA."""
    import copy
    import shutil

    params = copy.deepcopy(repo_params)
    params["datasets"] = {"run": ["finediving"], "variants": {**params["datasets"]["variants"], "mtl_aqa": []},
                          "dn_only": {**params["datasets"]["dn_only"], "mtl_aqa": []}}
    root = tmp_path / "project"
    shutil.copytree(REPO / "workflow", root / "workflow")
    for name in ("Snakefile", "dvc.yaml"):
        shutil.copy(REPO / name, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    Repo.init(str(root), no_scm=True)
    with Repo(str(root)) as repo:
        names = [s.name for s in repo.index.stages]
    assert "synthesize_videos@finediving" in names and "train@fr-dn" in names
    assert not [n for n in names if "mtl_aqa" in n], names
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=root / "Snakefile", workdir=root)
        rules = {r.name: r for r in wf._workflow.rules}
        asked = [str(f) for name in ("synthesize_videos", "extract_features", "make_report")
                 for f in rules[name].input]
    assert asked and not [f for f in asked if "mtl_aqa" in f], asked
