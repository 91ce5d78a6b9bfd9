"""aqa.cluster: each job's cluster resources from params' `cluster` section, and its checks."""

from __future__ import annotations

import copy

import pytest

from aqa.cluster import CLUSTER_STAGES, job_resources, job_threads
from aqa.params import ParamsError, validate_params


def test_resources_name_what_the_slurm_plugin_reads(repo_params):
    p = copy.deepcopy(repo_params)
    p["cluster"].update(partition="cpu", gpu_partition="gpu", account="aqa_lab", gpu_model=None)
    p["cluster"]["jobs"]["train"] = {"threads": 6, "mem_mb": 12000, "runtime": 90, "gpus": 2}
    p["cluster"]["jobs"]["evaluate"] = {"threads": 2, "mem_mb": 3000, "runtime": 20, "gpus": 0}
    assert job_threads(p, "train") == 6
    assert job_resources(p, "train") == {"mem_mb": 12000, "runtime": 90, "slurm_partition": "gpu",
                                         "slurm_account": "aqa_lab", "gpu": 2}
    # no GPU: the general partition, and no gpu resource at all (the plugin would ask --gpus)
    assert job_resources(p, "evaluate") == {"mem_mb": 3000, "runtime": 20, "slurm_partition": "cpu",
                                            "slurm_account": "aqa_lab"}
    p["cluster"]["gpu_model"] = "a100"
    assert job_resources(p, "train")["gpu_model"] == "a100"
    assert "gpu_model" not in job_resources(p, "evaluate")


def test_unset_names_are_left_to_slurm(repo_params):
    p = copy.deepcopy(repo_params)
    p["cluster"].update(partition=None, gpu_partition=None, account=None, gpu_model=None)
    for stage in CLUSTER_STAGES:
        res = job_resources(p, stage)
        assert not {"slurm_partition", "slurm_account", "gpu_model"} & set(res), (stage, res)
        assert res["mem_mb"] == p["cluster"]["jobs"][stage]["mem_mb"]
    p["cluster"]["partition"] = "batch"          # a GPU job without gpu_partition: `partition`
    p["cluster"]["jobs"]["train"]["gpus"] = 1
    assert job_resources(p, "train")["slurm_partition"] == "batch"


def test_every_cluster_stage_has_resources_and_the_default_fits_two_cpus(repo_params):
    jobs = repo_params["cluster"]["jobs"]
    assert set(jobs) == set(CLUSTER_STAGES)
    # the single-node cluster of scripts/local_slurm.sh on a 2-core machine takes every job
    assert max(job["threads"] for job in jobs.values()) <= 2


@pytest.mark.parametrize("key, value, message", [
    ("partition", "gpu nodes", "cluster.partition: 'gpu nodes' does not match"),
    ("account", "", "cluster.account: '' does not match"),
    ("jobs", None, "cluster.jobs: None is not of type 'object'"),
])
def test_schema_refuses_bad_names(repo_params, key, value, message):
    p = copy.deepcopy(repo_params)
    p["cluster"][key] = value
    with pytest.raises(ParamsError, match=message.replace("(", r"\(")):
        validate_params(p, "params.yaml")


def test_schema_refuses_unknown_and_missing_job_keys(repo_params):
    p = copy.deepcopy(repo_params)
    p["cluster"]["jobs"]["train"]["gpu"] = 1                    # the plugin's name, not ours
    del p["cluster"]["jobs"]["evaluate"]
    p["cluster"]["jobs"]["extract_frames"]["runtime"] = 0
    with pytest.raises(ParamsError) as err:
        validate_params(p, "params.yaml")
    text = str(err.value)
    assert "cluster.jobs.train.gpu: unknown key (did you mean cluster.jobs.train.gpus?)" in text
    assert "cluster.jobs.evaluate: missing" in text
    assert "cluster.jobs.extract_frames.runtime: 0 is less than the minimum of 1" in text


def test_a_job_gets_at_least_its_stage_workers(repo_params):
    p = copy.deepcopy(repo_params)
    p["extract_frames"]["workers"] = 3
    p["cluster"]["jobs"]["extract_frames"]["threads"] = 2
    with pytest.raises(ParamsError, match=r"cluster.jobs.extract_frames.threads = 2 is fewer than "
                                          r"extract_frames.workers = 3"):
        validate_params(p, "params.yaml")
    p["cluster"]["jobs"]["extract_frames"]["threads"] = 3
    validate_params(p, "params.yaml")
