"""MUSDL trained once (datasets.dn_only): the report's w/o DN / w/o DD cells show its w/ DN model's
numbers marked "(same model)", in every table with a MUSDL row, and the captions say so; a dn-only
variant whose modes differ (FineParser, or USDL put there) keeps "not run"."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from aqa.models.registry import METHODS, is_pairwise, variant_settings
from aqa.provenance import metrics_provenance
from aqa.report.tables import NOT_RUN, make_report
from aqa.trained import SAME_MODEL_METHODS
from table_helpers import read_rows, row

INPUTS = {"annotations": "a" * 64, "features": "f" * 64, "code": "c" * 64}


def summary(rho, rl2, std=0.001):
    return {"rho": {"mean": rho, "std": std}, "rl2_x100": {"mean": rl2, "std": std}, "l2": {"mean": 40.0, "std": 1.0}}


def write_metrics(folder, params, variant, dataset, honest, paper):
    base, _, mode = variant.rpartition("-")
    data = {"variant": variant, "method": params["train"]["variants"][base]["method"], "exemplar_mode": mode,
            "dataset": dataset, "footage": "stand-in", "seeds": list(params["train"]["seeds"]), "honest": honest,
            "paper": paper, "scoring": "voting" if base == "fr" else "direct",
            "provenance": metrics_provenance(params, base, mode, dataset, inputs=INPUTS, models={})}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{variant}.json").write_text(json.dumps(data))


@pytest.fixture()
def params(repo_params):
    """fr and usdl in both modes, musdl w/ DN only, on both datasets (fr on FineDiving alone)."""
    p = copy.deepcopy(repo_params)
    p["train"]["variants"] = {k: p["train"]["variants"][k] for k in ("fr", "usdl", "musdl")}
    p["train"]["exemplar_modes"] = ["dn", "nodn"]
    p["datasets"]["variants"] = {"finediving": ["fr", "usdl"], "mtl_aqa": ["usdl"]}
    p["datasets"]["dn_only"] = {"finediving": ["musdl"], "mtl_aqa": ["musdl"]}
    p["make_report"]["table4_variant"] = "fr"
    return p


def write_all(root, params):
    for dataset, variants in (("finediving", ["fr-dn", "fr-nodn", "usdl-dn", "usdl-nodn", "musdl-dn"]),
                              ("mtl_aqa", ["usdl-dn", "usdl-nodn", "musdl-dn"])):
        for i, variant in enumerate(variants):
            write_metrics(root / dataset, params, variant, dataset, summary(0.5 + i / 100, 2.0 - i / 10),
                          summary(0.6 + i / 100, 1.5 - i / 10))




def test_musdl_trained_once_fills_both_columns_marked(tmp_path, params):
    write_all(tmp_path / "m", params)
    make_report(metrics_dir=tmp_path / "m", tables_dir=tmp_path / "t", params=params)
    t2 = read_rows(tmp_path / "t" / "finediving_table2.csv")   # w/o DN rho, R-l2, w/ DN rho, R-l2
    for result in ("ours, honest", "ours, paper protocol"):
        cells = row(t2, "MUSDL", result)[2:]
        assert cells[:2] == [c + " (same model)" for c in cells[2:]] and "±" in cells[2]
        usdl = row(t2, "USDL", result)[2:]
        assert "same model" not in "".join(usdl) and usdl[0] != usdl[2]   # its own w/o DN model
    mtl = read_rows(tmp_path / "t" / "mtl_aqa.csv")
    cells = row(mtl, "MUSDL", "ours, honest")[2:]
    assert cells[:2] == [c + " (same model)" for c in cells[2:]]
    fp1 = read_rows(tmp_path / "t" / "fineparser_table1.csv")
    dn, nodn = row(fp1, "MUSDL", "ours, w/ DN, honest")[2:4], row(fp1, "MUSDL", "ours, w/o DN, honest")[2:4]
    assert nodn == [c + " (same model)" for c in dn]
    fp2 = read_rows(tmp_path / "t" / "fineparser_table2.csv")
    assert row(fp2, "MUSDL", "ours, w/o DD, paper protocol")[2] == row(fp2, "MUSDL", "ours, w/ DD, paper protocol")[2] + " (same model)"
    md = (tmp_path / "t" / "finediving_table2.md").read_text()
    assert "the same model, trained once" in md and "trained twice" not in md
    assert "w/o DN cells repeat that model's numbers" in md
    assert "w/o DD cells repeat that model's numbers" in (tmp_path / "t" / "mtl_aqa.md").read_text()


def test_a_stale_nodn_file_is_not_used(tmp_path, params):
    """A musdl-nodn.json left from a run that trained both modes is ignored: the cells come from musdl-dn."""
    write_all(tmp_path / "m", params)
    write_metrics(tmp_path / "m" / "finediving", params, "musdl-nodn", "finediving", summary(0.1, 9.0), summary(0.1, 9.0))
    make_report(metrics_dir=tmp_path / "m", tables_dir=tmp_path / "t", params=params)
    cells = row(read_rows(tmp_path / "t" / "finediving_table2.csv"), "MUSDL", "ours, honest")[2:]
    assert cells[0] == cells[2] + " (same model)" and not cells[0].startswith("0.1000")


def test_musdl_in_both_modes_is_reported_as_before(tmp_path, params):
    params["datasets"]["variants"]["finediving"].append("musdl")
    params["datasets"]["dn_only"]["finediving"] = []
    write_all(tmp_path / "m", params)
    write_metrics(tmp_path / "m" / "finediving", params, "musdl-nodn", "finediving", summary(0.1, 9.0), summary(0.1, 9.0))
    make_report(metrics_dir=tmp_path / "m", tables_dir=tmp_path / "t", params=params)
    cells = row(read_rows(tmp_path / "t" / "finediving_table2.csv"), "MUSDL", "ours, honest")[2:]
    assert cells[0] == "0.1000 ± 0.0010" and "same model" not in "".join(cells)
    md = (tmp_path / "t" / "finediving_table2.md").read_text()
    assert "same model trained twice" in md and "repeat that model's numbers" not in md


def test_a_dn_only_variant_whose_modes_differ_stays_not_run(tmp_path, params):
    params["datasets"]["variants"]["finediving"].remove("usdl")
    params["datasets"]["dn_only"]["finediving"].append("usdl")
    write_all(tmp_path / "m", params)
    make_report(metrics_dir=tmp_path / "m", tables_dir=tmp_path / "t", params=params)
    cells = row(read_rows(tmp_path / "t" / "finediving_table2.csv"), "USDL", "ours, honest")[2:]
    assert cells[:2] == [NOT_RUN, NOT_RUN] and "±" in cells[2]


def test_same_model_methods_are_the_registry_s_mode_free_direct_methods():
    """A direct method whose exemplar mode sets nothing trains the same model in both modes (MUSDL:
    tests/unit/train/test_baselines.py checks the checkpoints are equal); no other method may be
    reported that way."""
    pool = {"score": np.array([50.0, 60.0, 70.0, 80.0]), "difficulty": np.array([2.0, 3.0, 3.2, 3.5]),
            "action": np.array([0, 1, 0, 1])}
    mode_free = {m for m in METHODS if not is_pairwise(m)
                 and variant_settings(m, "dn", **pool) == variant_settings(m, "nodn", **pool)}
    assert mode_free == set(SAME_MODEL_METHODS) == {"musdl"}
