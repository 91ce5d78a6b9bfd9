"""`snakemake -n` and `dvc status` call the same stages stale (issue 12, item 5).

On a tiny project that `dvc repro` has built, each case asks both drivers: nothing changed; a code
edit; an input edit (a raw annotation file); a params edit of a key stages read, and of one no
stage reads. DVC's answer is the stages `dvc status` lists with changed deps (params included);
Snakemake's the jobs of `snakemake -n`, each named by the DVC stage that runs it. Snakemake
gives a reason of its own only to the first stale jobs of a chain (the ones after them run
because they do), so its "direct" stages are compared with the first of DVC's, and every job it
would run with DVC's stages and all those after them in dvc.yaml's DAG. An edited *output* (the
annotation is synthesize_videos' output) is one more stage to DVC, which makes it again; Snakemake
keeps the edit: the README says which driver decides ("Which driver decides what is stale").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import networkx as nx
from dvc.repo import Repo
from harness import read_params, run, write_params

from aqa.data.datasets import dvc_stage

BY_ANOTHER_JOB = "Input files updated by another job"
JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:    .*\n)+)", re.M)


def stage_of_output(path: str) -> str | None:
    """The DVC stage whose outputs hold `path` (None: a rule with no stage, such as `all`)."""
    parts = path.split("/")
    if path.startswith("data/raw/"):
        return f"synthesize_videos@{parts[2]}"
    if path.startswith("data/interim/frames/"):
        return f"extract_frames@{parts[3]}"
    if path.startswith("data/processed/annotations/"):
        return f"convert_annotations@{parts[3]}"
    if path.startswith("data/external/i3d/"):
        return "fetch_i3d"
    if path.startswith("data/processed/features/"):
        return f"extract_features@{parts[3]}"
    if path.startswith("models/"):
        return f"{dvc_stage('train', parts[1])}@{parts[2]}"
    if path.startswith(("reports/metrics/", "reports/predictions/")):
        return f"{dvc_stage('evaluate', parts[2])}@{Path(parts[3]).stem}"
    if path.startswith("reports/tables"):
        return "make_report"
    if path.startswith(("reports/figures", "reports/plots", "reports/summary")):
        return "make_figures"
    return None


def snakemake_stale(root: Path) -> tuple[set[str], set[str]]:
    """(stages with a job stale for its own reason, stages with any job to run) of `snakemake -n`."""
    proc = run(["snakemake", "-n", "-c1"], root)
    out = proc.stdout + proc.stderr
    direct, every = set(), set()
    for rule, body in JOB.findall(out):
        fields = dict(re.findall(r"^    (\w+): (.*)$", body, flags=re.M))
        if "output" not in fields:
            continue
        stage = stage_of_output(fields["output"].split(", ")[0])
        assert stage, f"rule {rule}: output {fields['output']} is no stage's"
        every.add(stage)
        reasons = [r.split(":")[0].strip() for r in fields.get("reason", "").split("; ") if r]
        if any(r != BY_ANOTHER_JOB for r in reasons):
            direct.add(stage)
    if not every:
        assert "Nothing to be done" in out, out[-3000:]
    return direct, every


def dvc_stale(root: Path) -> tuple[set[str], set[str]]:
    """(stages with changed deps or params, stages with changed outputs) of `dvc status`, without
    check_params (DVC's own check of the whole params file, which no Snakemake rule runs)."""
    status = json.loads(run(["dvc", "status", "--json"], root).stdout or "{}")
    deps, outs = set(), set()
    for name, changes in status.items():
        name = name.split(":")[-1]
        if name == "check_params":
            continue
        for change in changes:
            (outs if isinstance(change, dict) and "changed outs" in change else deps).add(name)
    return deps, outs


def first_and_after(root: Path, stale: set[str]) -> tuple[set[str], set[str]]:
    """(the stages of `stale` that follow none of the others, `stale` and every stage after one of it)."""
    with Repo(str(root)) as repo:
        graph, by_name = repo.index.graph, {s.name: s for s in repo.index.stages}
        after = {n: {s.name for s in nx.ancestors(graph, by_name[n])} for n in stale}  # edges point to deps
    first = {n for n in stale if not any(n in after[m] for m in stale if m != n)}
    return first, set(stale).union(*after.values())


def both(root: Path):
    """Snakemake's (direct, every) and DVC's (changed deps, changed outs) answers."""
    (smk_direct, smk_every), (dvc_deps, dvc_outs) = snakemake_stale(root), dvc_stale(root)
    return smk_direct, smk_every, dvc_deps, dvc_outs


def assert_agree(root: Path, direct: set[str], every: set[str], deps: set[str]) -> None:
    first, would_run = first_and_after(root, deps)
    assert direct == first, (direct, first)
    assert every == would_run, (every, would_run)


def test_after_repro_both_see_nothing_to_do(built_project):
    assert both(built_project) == (set(), set(), set(), set())


def test_a_code_edit(built_project):
    with open(built_project / "src/aqa/metrics.py", "a") as f:
        f.write("\n# an edit\n")
    direct, every, deps, outs = both(built_project)
    assert deps == {"train@fr-dn", "train_mtl_aqa@fr-dn", "evaluate@fr-dn", "evaluate_mtl_aqa@fr-dn"}
    assert not outs
    assert_agree(built_project, direct, every, deps)
    assert direct == {"train@fr-dn", "train_mtl_aqa@fr-dn"}
    assert every == deps | {"make_report", "make_figures"}


def test_an_input_edit(built_project):
    annotation = sorted(p for p in (built_project / "data/raw/finediving/annotations").rglob("*")
                        if p.is_file() and p.name != ".snakemake_timestamp")[0]
    with open(annotation, "ab") as f:
        f.write(b"\0")
    direct, every, deps, outs = both(built_project)
    assert deps == {"extract_frames@finediving", "convert_annotations@finediving"}
    assert_agree(built_project, direct, every, deps)
    assert "train@fr-dn" in every and "train_mtl_aqa@fr-dn" not in every
    assert outs == {"synthesize_videos@finediving"}     # DVC makes the edited output again


def test_a_params_edit_of_a_key_stages_read_and_of_one_none_reads(built_project):
    p = read_params(built_project)
    p["cluster"]["jobs"]["train"]["mem_mb"] += 1000     # where a job runs, not what it makes
    write_params(built_project, p)
    assert both(built_project) == (set(), set(), set(), set())

    p["extract_frames"]["jpeg_quality"] -= 1
    write_params(built_project, p)
    direct, every, deps, outs = both(built_project)
    assert deps == {"extract_frames@finediving", "extract_frames@mtl_aqa"}
    assert not outs
    assert_agree(built_project, direct, every, deps)


def test_a_fresh_clone_after_checkout_and_touch(built_project, tmp_path):
    """A clone whose outputs come from DVC's cache: `dvc status` is clean at once; Snakemake, which
    sees the times the checkout gave the files, is after `snakemake --touch` (README)."""
    origin = built_project
    with open(origin / ".gitignore", "a") as f:   # as the project's own .gitignore: per-machine state
        f.write(".snakemake/\n/.aqa/\n/logs/\n/mlartifacts/\n")
    run(["git", "add", "-A"], origin)           # dvc.lock and the outputs DVC keeps in git
    run(["git", "commit", "-qm", "built"], origin)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    run(["dvc", "cache", "dir", str(origin / ".dvc" / "cache")], clone)
    run(["dvc", "checkout"], clone)
    run(["dvc", "repro", "check_params"], clone)   # its output is not kept (.aqa/): the params check
    assert dvc_stale(clone) == (set(), set())
    run(["snakemake", "-c1", "--touch"], clone)
    assert snakemake_stale(clone) == (set(), set())
    assert dvc_stale(clone) == (set(), set())
