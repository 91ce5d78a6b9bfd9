"""What each Snakemake job asks a cluster for, from params' `cluster` section.

The Snakefile gives every rule that runs a stage's command `threads: job_threads(config, stage)`
and `resources: **job_resources(config, stage)`; the SLURM executor plugin turns them into
sbatch options (threads -> --cpus-per-task, mem_mb -> --mem, runtime -> -t, gpu -> --gpus,
slurm_partition -> -p, slurm_account -> -A). Locally the same values only schedule: Snakemake
caps threads at --cores and ignores the rest. Nothing here reaches a stage's command, so the
section changes no result (and no dvc.yaml stage tracks it).
"""

from __future__ import annotations

from typing import Any

# Stages whose jobs go to the cluster (params cluster.jobs has one entry each). The other stages'
# rules are the Snakefile's `localrules`: small, or (fetch_i3d) downloading, which compute nodes
# often cannot.
CLUSTER_STAGES = ("synthesize_videos", "extract_frames", "extract_features", "train", "evaluate")


def job_threads(params: dict[str, Any], stage: str) -> int:
    """The CPUs a job of `stage` asks for (Snakemake's `threads`)."""
    return params["cluster"]["jobs"][stage]["threads"]


def job_resources(params: dict[str, Any], stage: str) -> dict[str, Any]:
    """A job of `stage`'s Snakemake resources, named as snakemake-executor-plugin-slurm reads them.

    A GPU job goes to `gpu_partition` when one is given; unset names (null) are left out, so
    SLURM's defaults apply (the default partition, the user's default account, any GPU model).
    """
    cluster = params["cluster"]
    job = cluster["jobs"][stage]
    resources: dict[str, Any] = {"mem_mb": job["mem_mb"], "runtime": job["runtime"]}
    partition = (job["gpus"] and cluster["gpu_partition"]) or cluster["partition"]
    if partition:
        resources["slurm_partition"] = partition
    if cluster["account"]:
        resources["slurm_account"] = cluster["account"]
    if job["gpus"]:
        resources["gpu"] = job["gpus"]
        if cluster["gpu_model"]:
            resources["gpu_model"] = cluster["gpu_model"]
    return resources


def thread_errors(params: dict[str, Any]) -> list[str]:
    """Jobs that would run more worker processes than the CPUs they ask for (the stages with a
    `workers` key start that many processes; on a cluster they would share fewer CPUs)."""
    problems = []
    for stage in CLUSTER_STAGES:
        workers = params[stage].get("workers")
        threads = job_threads(params, stage)
        if workers is not None and threads < workers:
            problems.append(f"cluster.jobs.{stage}.threads = {threads} is fewer than {stage}.workers = {workers} "
                            "(the processes the job runs): give it at least as many")
    return problems
