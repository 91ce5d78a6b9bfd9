"""aqa.trained: which <variant>-<mode> params train on each dataset, each variant's seeds, and the
DVC stage named for a dn-only variant wherever a message tells the user what to run."""

from __future__ import annotations

import copy
from pathlib import Path

from aqa.evaluate.run import retrain_advice
from aqa.report.tables import evaluate_stage
from aqa.trained import is_dn_only, listed, trained_names, trained_pairs, variant_seeds


def test_pairs_every_mode_for_variants_and_dn_for_dn_only(repo_params):
    p = copy.deepcopy(repo_params)
    p["datasets"]["variants"] = {"finediving": ["tsa", "fr"], "mtl_aqa": ["core"]}
    p["datasets"]["dn_only"] = {"finediving": ["fineparser"], "mtl_aqa": []}
    assert trained_pairs(p, "finediving") == [("tsa", "dn"), ("tsa", "nodn"), ("fr", "dn"), ("fr", "nodn"),
                                              ("fineparser", "dn")]
    assert trained_names(p, "mtl_aqa") == ["core-dn", "core-nodn"]
    assert listed(p, "finediving") == ["tsa", "fr", "fineparser"]
    assert is_dn_only(p, "finediving", "fineparser") and not is_dn_only(p, "finediving", "tsa")
    assert not is_dn_only(p, "mtl_aqa", "fineparser")
    p["train"]["exemplar_modes"] = ["nodn"]
    assert trained_names(p, "finediving")[-1] == "fineparser-dn"   # (params refuse this: dn_only needs dn)


def test_a_variants_own_seeds_else_train_seeds(repo_params):
    assert variant_seeds(repo_params, "fineparser") == [0, 1]
    assert variant_seeds(repo_params, "core") == repo_params["train"]["seeds"]   # `train:` without seeds
    p = copy.deepcopy(repo_params)
    p["train"]["seeds"] = [5]
    assert variant_seeds(p, "tsa") == [5] and variant_seeds(p, "fineparser") == [0, 1]


def test_messages_name_the_dn_only_stage(repo_params):
    seed_dir = Path("models/finediving/fineparser-dn/seed0")
    assert "dvc repro train_dn@fineparser-dn " in retrain_advice("fineparser-dn", seed_dir, repo_params)
    assert "dvc repro train@tsa-dn " in retrain_advice("tsa-dn", Path("models/finediving/tsa-dn/seed0"), repo_params)
    assert evaluate_stage(repo_params, "finediving", "fineparser", "dn") == "evaluate_dn@fineparser-dn"
    assert evaluate_stage(repo_params, "mtl_aqa", "core", "nodn") == "evaluate_mtl_aqa@core-nodn"
