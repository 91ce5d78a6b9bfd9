"""make_report on tiny metrics JSONs: rows, columns, published numbers, "not run", captions, and
the checks that a table is built only from the metrics of the current params."""

from __future__ import annotations

import copy
import json

import pytest

from aqa.errors import AqaError
from aqa.provenance import metrics_provenance
from aqa.report.tables import NOT_RUN, make_report
from table_helpers import read_rows, row

INPUTS = {"annotations": "a" * 64, "features": "f" * 64, "code": "c" * 64}


def summary(rho, rl2, aiou=None, std=0.001):
    out = {"rho": {"mean": rho, "std": std}, "rl2_x100": {"mean": rl2, "std": std}, "l2": {"mean": 40.0, "std": 1.0}}
    if aiou:
        out["aiou50"] = {"mean": aiou[0], "std": 0.01}
        out["aiou75"] = {"mean": aiou[1], "std": 0.02}
    return out


def write_metrics(folder, params, variant, honest, paper, inputs=INPUTS, dataset="finediving", **extra):
    """A metrics file as evaluate writes it from `params` (its provenance block included)."""
    base, _, mode = variant.rpartition("-")
    data = {"variant": variant, "method": params["train"]["variants"][base]["method"], "exemplar_mode": mode,
            "dataset": dataset, "footage": "stand-in", "seeds": list(params["train"]["seeds"]), "honest": honest,
            "paper": paper, "provenance": metrics_provenance(params, base, mode, dataset, inputs=inputs, models={}),
            **extra}
    (folder / f"{variant}.json").write_text(json.dumps(data))


@pytest.fixture()
def params(repo_params):
    """The repository's params training two variants (fr, tsa) in both exemplar modes."""
    p = copy.deepcopy(repo_params)
    p["train"]["variants"] = {k: p["train"]["variants"][k] for k in ("fr", "tsa")}
    p["train"]["exemplar_modes"] = ["dn", "nodn"]
    p["datasets"]["variants"] = {"finediving": ["fr", "tsa"], "mtl_aqa": []}
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": []}
    p["make_report"]["table4_variant"] = "tsa"
    return p


@pytest.fixture()
def metrics(tmp_path, params):
    folder = tmp_path / "metrics" / "finediving"   # the metrics root holds one folder per dataset
    folder.mkdir(parents=True)
    by_m = {str(m): {"honest": summary(0.5 + m / 100, 1.0 - m / 100, (0.6, 0.2))} for m in (1, 5, 10)}
    write_metrics(folder, params, "tsa-dn", summary(0.7, 0.9, (0.8, 0.3)), summary(0.75, 0.8, (0.85, 0.35)),
                  by_num_exemplars=by_m,
                  gt_transitions={"honest": summary(0.72, 0.85), "paper": summary(0.77, 0.79)})
    write_metrics(folder, params, "tsa-nodn", summary(0.66, 0.95, (0.7, 0.25)), summary(0.68, 0.9, (0.75, 0.3)))
    write_metrics(folder, params, "fr-nodn", summary(0.6, 1.2), summary(0.65, 1.1))
    write_metrics(folder, params, "fr-dn", summary(0.62, 1.1), summary(0.64, 1.0))
    return folder


@pytest.fixture()
def report(tmp_path, metrics, params):
    tables = tmp_path / "tables"
    make_report(metrics_dir=metrics.parent, tables_dir=tables, params=params)
    return tables




def test_all_files_written(report):
    for n in (2, 3, 4):
        for ext in ("md", "csv", "tex"):
            assert (report / f"finediving_table{n}.{ext}").stat().st_size > 0


def test_table2(report):
    rows = read_rows(report / "finediving_table2.csv")
    assert rows[0] == ["Method", "Result", "w/o DN rho", "w/o DN R-l2", "w/ DN rho", "w/ DN R-l2"]
    assert [r[0] for r in rows[1:]] == (["USDL"] * 3 + ["MUSDL"] * 3 + ["CoRe"] * 3 + ["TSA"] * 3
                                        + ["I3D+MLP (extra row)"] * 3)
    assert row(rows, "I3D+MLP (extra row)", "published")[2:] == ["–"] * 4
    assert row(rows, "CoRe", "published")[2:] == ["0.8631", "0.5565", "0.9061", "0.3615"]
    assert row(rows, "USDL", "ours, honest")[2:] == [NOT_RUN] * 4
    tsa = row(rows, "TSA", "ours, honest")
    assert tsa[2:4] == ["0.6600 ± 0.0010", "0.9500 ± 0.0010"]
    assert tsa[4:] == ["0.7000 ± 0.0010", "0.9000 ± 0.0010"]
    assert row(rows, "TSA", "ours, paper protocol")[4] == "0.7500 ± 0.0010"


def test_table3(report):
    rows = read_rows(report / "finediving_table3.csv")
    assert rows[0][2:6] == ["w/o DN rho", "w/o DN R-l2", "w/o DN AIoU@0.5", "w/o DN AIoU@0.75"]
    assert len(rows[0]) == 10
    assert [r[0] for r in rows[1::3]] == ["F+R", "F+R*", "F+R#", "F+S+R", "TSA", "TSA-dagger"]
    assert row(rows, "F+S+R", "published")[2:] == ["0.8602", "0.5687", "77.44", "26.36",
                                                   "0.8793", "0.5428", "78.64", "29.37"]
    assert row(rows, "F+R", "published")[4:6] == ["–", "–"]
    fr = row(rows, "F+R", "ours, honest")
    assert fr[2:6] == ["0.6000 ± 0.0010", "1.2000 ± 0.0010", "–", "–"]
    assert fr[6:] == ["0.6200 ± 0.0010", "1.1000 ± 0.0010", "–", "–"]
    tsa = row(rows, "TSA", "ours, honest")
    assert tsa[8:] == ["80.00 ± 1.00", "30.00 ± 2.00"]  # fractions printed in %
    dagger = row(rows, "TSA-dagger", "ours, paper protocol")  # from tsa-dn's gt_transitions block
    assert dagger[6:8] == ["0.7700 ± 0.0010", "0.7900 ± 0.0010"]
    assert row(rows, "F+R#", "ours, paper protocol")[2:] == [NOT_RUN] * 8


def test_table4(report, params):
    rows = read_rows(report / "finediving_table4.csv")
    assert rows[0] == ["M", "Result", "rho", "R-l2", "AIoU@0.5", "AIoU@0.75"]
    counts = [str(m) for m in params["make_report"]["exemplar_counts"]]
    assert [r[0] for r in rows[1::2]] == counts
    assert row(rows, "10", "published")[2:] == ["0.9203", "0.3420", "82.51", "34.31"]
    assert row(rows, "5", "ours, honest")[2:] == ["0.5500 ± 0.0010", "0.9500 ± 0.0010", "60.00 ± 1.00",
                                                  "20.00 ± 2.00"]
    assert row(rows, "15", "ours, honest")[2:] == [NOT_RUN] * 4


def test_captions(report):
    md = (report / "finediving_table3.md").read_text()
    assert "stand-in" in md and "3 seed(s) (0, 1, 2)" in md
    assert "paper = best value" in md and "honest = best-validation" in md
    assert "| F+S+R | published | 0.8602 |" in md
    tex = (report / "finediving_table2.tex").read_text()
    assert r"\caption{" in tex and r"$\pm$" in tex and r"\label{tab:finediving_table2}" in tex
    assert "honest only" in (report / "finediving_table4.md").read_text()


def test_bad_json_is_refused(metrics, tmp_path, params):
    (metrics / "tsa-dn.json").write_text("{not json")
    with pytest.raises(ValueError, match="tsa-dn.json"):
        make_report(metrics_dir=metrics.parent, tables_dir=tmp_path / "t", params=params)


# --------------------------------------------------------------------------- only the current params


def _one_line_error(metrics, tmp_path, params) -> str:
    with pytest.raises(AqaError) as err:
        make_report(metrics_dir=metrics.parent, tables_dir=tmp_path / "t", params=params)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "t").exists()          # nothing written from a refused set of metrics
    return str(err.value)


def test_files_of_variants_params_do_not_train_are_ignored(tmp_path, metrics, params):
    """The issue's case: one mode and one seed now; old 3-seed files of the other mode stay in the folder."""
    now = copy.deepcopy(params)
    now["train"]["seeds"] = [0]
    now["train"]["exemplar_modes"] = ["dn"]
    write_metrics(metrics, now, "tsa-dn", summary(0.4, 2.0, (0.5, 0.1)), summary(0.45, 1.9, (0.55, 0.15)),
                  by_num_exemplars={"10": {"honest": summary(0.4, 2.0, (0.5, 0.1))}})
    write_metrics(metrics, now, "fr-dn", summary(0.3, 2.5), summary(0.35, 2.4))
    make_report(metrics_dir=metrics.parent, tables_dir=tmp_path / "t", params=now)
    rows = read_rows(tmp_path / "t" / "finediving_table2.csv")
    assert row(rows, "TSA", "ours, honest")[2:] == [NOT_RUN, NOT_RUN, "0.4000 ± 0.0010", "2.0000 ± 0.0010"]
    for n in (2, 3, 4):
        md = (tmp_path / "t" / f"finediving_table{n}.md").read_text()
        assert "over 1 seed(s) (0);" in md, md


def test_metrics_from_other_params_refused(tmp_path, metrics, params):
    now = copy.deepcopy(params)
    now["train"]["seeds"] = [0]                   # the files on disk were made with seeds [0, 1, 2]
    message = _one_line_error(metrics, tmp_path, now)
    assert "fr-dn.json" in message and "train.seeds" in message and "[0, 1, 2]" in message


def test_metrics_of_another_variant_config_refused(tmp_path, metrics, params):
    now = copy.deepcopy(params)
    now["train"]["variants"]["tsa"] = {"method": "tsa", "regressor_hidden": [64]}
    message = _one_line_error(metrics, tmp_path, now)
    assert "tsa-dn.json" in message and "variant.regressor_hidden" in message


def test_missing_metrics_of_a_trained_variant_refused(tmp_path, metrics, params):
    (metrics / "fr-nodn.json").unlink()
    message = _one_line_error(metrics, tmp_path, params)
    assert str(metrics / "fr-nodn.json") in message and "evaluate" in message


def test_table4_variant_that_is_not_trained_refused(tmp_path, metrics, params):
    params["make_report"]["table4_variant"] = "nonexistent"
    message = _one_line_error(metrics, tmp_path, params)
    assert "make_report.table4_variant" in message and "nonexistent" in message


def test_metrics_without_provenance_refused(tmp_path, metrics, params):
    path = metrics / "tsa-nodn.json"
    data = json.loads(path.read_text())
    del data["provenance"]
    path.write_text(json.dumps(data))
    message = _one_line_error(metrics, tmp_path, params)
    assert str(path) in message and "provenance" in message


def test_metrics_from_other_annotations_than_the_rest_refused(tmp_path, metrics, params):
    write_metrics(metrics, params, "fr-dn", summary(0.62, 1.1), summary(0.64, 1.0),
                  inputs={**INPUTS, "annotations": "b" * 64})
    message = _one_line_error(metrics, tmp_path, params)
    assert "fr-dn.json" in message and "annotations" in message


# --------------------------------------------------------------------------- the baselines' rows


@pytest.fixture()
def baseline_params(params):
    p = copy.deepcopy(params)
    p["train"]["variants"].update({m: {"method": m} for m in ("i3d_mlp", "usdl", "musdl", "core")})
    p["datasets"]["variants"]["finediving"] += ["i3d_mlp", "usdl", "musdl", "core"]
    return p


def write_baselines(folder, params):
    for i, method in enumerate(("i3d_mlp", "usdl", "musdl", "core")):
        for j, mode in enumerate(("nodn", "dn")):
            scoring = "voting" if method == "core" else "direct"
            write_metrics(folder, params, f"{method}-{mode}", summary(0.3 + i / 10 + j / 100, 2.0 - i / 10),
                          summary(0.35 + i / 10 + j / 100, 1.9 - i / 10), scoring=scoring)


def test_table2_baseline_rows_come_from_their_metrics(tmp_path, metrics, baseline_params):
    write_baselines(metrics, baseline_params)
    make_report(metrics_dir=metrics.parent, tables_dir=tmp_path / "t", params=baseline_params)
    rows = read_rows(tmp_path / "t" / "finediving_table2.csv")
    assert row(rows, "USDL", "published")[2:] == ["0.8302", "0.5927", "0.8913", "0.3822"]
    assert row(rows, "USDL", "ours, honest")[2:] == ["0.4000 ± 0.0010", "1.9000 ± 0.0010",
                                                     "0.4100 ± 0.0010", "1.9000 ± 0.0010"]
    assert row(rows, "MUSDL", "ours, paper protocol")[2:] == ["0.5500 ± 0.0010", "1.7000 ± 0.0010",
                                                              "0.5600 ± 0.0010", "1.7000 ± 0.0010"]
    assert row(rows, "CoRe", "ours, honest")[4] == "0.6100 ± 0.0010"
    assert row(rows, "I3D+MLP (extra row)", "ours, honest")[2:4] == ["0.3000 ± 0.0010", "2.0000 ± 0.0010"]
    assert row(rows, "I3D+MLP (extra row)", "published")[2:] == ["–"] * 4
    md = (tmp_path / "t" / "finediving_table2.md").read_text()
    assert "MUSDL always assembles" in md and "I3D+MLP is not in Xu et al. 2022" in md


def test_baseline_metrics_from_other_params_refused(tmp_path, metrics, baseline_params):
    """make_report's provenance check covers the baselines' files like the others'."""
    write_baselines(metrics, baseline_params)
    now = copy.deepcopy(baseline_params)
    now["train"]["variants"]["usdl"] = {"method": "usdl", "train": {"lr": 1e-4}}
    message = _one_line_error(metrics, tmp_path, now)
    assert "usdl-dn.json" in message and "variant.train.lr" in message


def test_table4_of_a_direct_variant_refused(tmp_path, metrics, baseline_params):
    write_baselines(metrics, baseline_params)
    baseline_params["make_report"]["table4_variant"] = "usdl"
    message = _one_line_error(metrics, tmp_path, baseline_params)
    assert "usdl-dn" in message and "voting exemplars" in message


def test_table4_caption_names_the_voting_variant(tmp_path, metrics, params):
    """The caption says which variant voted; the published rows stay TSA's."""
    make_report(metrics_dir=metrics.parent, tables_dir=tmp_path / "tsa", params=params)
    assert "Table 4: TSA (w/ DN) with M exemplars" in (tmp_path / "tsa" / "finediving_table4.md").read_text()
    p = copy.deepcopy(params)
    p["make_report"]["table4_variant"] = "fr"
    make_report(metrics_dir=metrics.parent, tables_dir=tmp_path / "fr", params=p)
    caption = (tmp_path / "fr" / "finediving_table4.md").read_text().splitlines()[0]
    assert "Table 4: F+R (variant fr, w/ DN); published rows: TSA's, with M exemplars" in caption, caption
    assert "TSA (w/ DN)" not in caption
