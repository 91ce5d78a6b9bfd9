"""aqa.provenance: content digests, the params each stage reads, and dvc.yaml listing exactly those."""

from __future__ import annotations

import copy
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from aqa.provenance import (TRAIN_KEYS_NOT_READ, annotations_digest, changed_inputs, changed_keys,
                            code_fingerprint, evaluate_params, metrics_provenance, sha256_json)
from train_helpers import make_dives, write_dives

REPO = Path(__file__).resolve().parents[2]


def test_annotations_digest_follows_the_content_not_the_bytes(tmp_path):
    rows = make_dives(12)
    a = write_dives(tmp_path / "a/dives.parquet", rows)
    b = tmp_path / "b/dives.parquet"
    b.parent.mkdir()
    # the same table written otherwise: other compression, rows in another order
    table = pq.read_table(a)
    pq.write_table(table.take(list(range(len(rows)))[::-1]), b, compression="snappy")
    assert a.read_bytes() != b.read_bytes()
    assert annotations_digest(a) == annotations_digest(b)
    rows[3]["dive_score"] += 0.5                   # one score changes: another digest
    c = write_dives(tmp_path / "c/dives.parquet", rows)
    assert annotations_digest(c) != annotations_digest(a)


def test_code_fingerprint_is_relative_and_covers_the_named_parts():
    train = code_fingerprint()
    assert train == code_fingerprint(("models", "train", "evaluate/voting.py", "evaluate/direct.py",
                                      "evaluate/sap_masks.py", "evaluate/mask_metrics.py", "metrics.py"))
    assert train != code_fingerprint(("models", "train", "evaluate", "metrics.py"))
    assert len(train) == 64


def test_changed_keys_and_inputs():
    old = {"train": {"lr": 0.1, "epochs": 2}, "seed": 0}
    assert changed_keys(old, {"train": {"lr": 0.2, "epochs": 2}, "seed": 0, "extra": 1}) == ["extra", "train.lr"]
    assert changed_inputs({"annotations": "x", "features": "f"}, {"annotations": "y", "features": "f"}) == \
        ["annotations"]
    assert changed_inputs(None, {"code": "c"}) == ["code"]


def test_evaluate_params_hold_no_path_and_only_what_is_read(repo_params):
    p = copy.deepcopy(repo_params)
    p["extract_frames"]["frames_root"]["finediving"] = "/somewhere/frames"
    read = evaluate_params(p, "tsa", "dn", "finediving")
    assert read["footage"] == "real" and read["dataset"] == "finediving" and "/somewhere" not in str(read)
    # each dataset's footage is its own
    assert evaluate_params(p, "tsa", "dn", "mtl_aqa")["footage"] == "stand-in"
    # (the constant lr_schedule is recorded as before the key existed: test_lr_schedule)
    assert set(read["train"]) == set(p["train"]) - TRAIN_KEYS_NOT_READ - {"lr_schedule"}
    assert read["variant"] == p["train"]["variants"]["tsa"]
    # keys nothing reads do not change the digest; keys that are read do
    block = metrics_provenance(p, "tsa", "dn", "finediving", inputs={}, models={})
    p["train"]["num_workers"] = 7
    p["train"]["variants"]["other"] = {"method": "fr"}
    p["extract_frames"]["frames_root"]["mtl_aqa"] = "/elsewhere"   # another dataset's footage
    p["datasets"]["variants"]["mtl_aqa"] = []
    same = metrics_provenance(p, "tsa", "dn", "finediving", inputs={}, models={})
    assert same["params_sha256"] == block["params_sha256"]
    other = metrics_provenance(p, "tsa", "dn", "mtl_aqa", inputs={}, models={})
    assert other["params_sha256"] != block["params_sha256"]
    p["evaluate"]["batch_size"] += 1
    changed = metrics_provenance(p, "tsa", "dn", "finediving", inputs={}, models={})
    assert changed["params_sha256"] != block["params_sha256"]
    assert block["params_sha256"] == sha256_json(read)


def test_evaluate_params_record_the_values_a_variant_trains_with(repo_params):
    """A variant's own `train:` values (FineParser's seeds and epochs) replace params.train's: a change of
    params.train a variant overrides leaves its models, and so its metrics, as they are."""
    p = copy.deepcopy(repo_params)
    fp = evaluate_params(p, "fineparser", "dn", "finediving")
    assert fp["train"]["seeds"] == [0, 1] and fp["train"]["epochs"] == 2
    tsa = evaluate_params(p, "tsa", "dn", "finediving")
    p["train"]["seeds"] = [3]
    p["train"]["epochs"] = 9
    assert evaluate_params(p, "fineparser", "dn", "finediving") == fp
    assert evaluate_params(p, "tsa", "dn", "finediving") != tsa
    p["train"]["variants"]["fineparser"]["train"]["seeds"] = [0]
    assert evaluate_params(p, "fineparser", "dn", "finediving")["train"]["seeds"] == [0]


def _stage_params(stage: dict) -> set[str]:
    return {p for p in stage["params"] if isinstance(p, str)}


def test_dvc_tracks_exactly_the_params_training_reads(repo_params):
    """The train stage reruns when (and only when) a param its checkpoints' config holds changes."""
    from aqa.train.loop import SeedRun

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    run = SeedRun(variant="tsa-dn", method="tsa", model_kwargs={}, mode="dn", seed=0,
                  train_cfg=repo_params["train"], eval_cfg=repo_params["evaluate"])
    config = run.config()
    # (+ lr_schedule: the config holds it unless it is the constant one, which trains as without it)
    read = {f"train.{k}" for k in config["train"]} | {"train.seeds", "train.lr_schedule", "train.variants.${item.variant}",
                                                      "evaluate"}
    assert set(config["evaluate"]) == set(repo_params["evaluate"])
    assert _stage_params(stages["train"]) == read
    assert _stage_params(stages["train_mtl_aqa"]) == read   # every dataset's training reads the same


def test_dvc_reruns_training_on_every_source_its_code_fingerprint_covers():
    """Else evaluate would find models "made from other code" that DVC does not retrain."""
    from aqa.provenance import TRAIN_CODE

    for stage in ("train", "train_mtl_aqa"):
        deps = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["deps"]
        for part in TRAIN_CODE:
            path = f"src/aqa/{part}"
            assert any(path == dep or path.startswith(dep + "/") for dep in deps), f"{stage} does not depend on {path}"


def test_dvc_reruns_the_report_on_every_param_it_checks():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert {"datasets", "make_report", "train", "evaluate", "extract_frames.frames_root"} <= \
        _stage_params(stages["make_report"])
    for stage in ("train", "evaluate", "train_mtl_aqa", "evaluate_mtl_aqa", "make_report"):
        assert "src/aqa/provenance.py" in stages[stage]["deps"]
