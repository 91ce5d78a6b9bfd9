"""make_report on tiny metrics JSONs: rows, columns, published numbers, "not run", captions."""

from __future__ import annotations

import csv
import json

import pytest

from aqa.report.tables import NOT_RUN, make_report


def summary(rho, rl2, aiou=None, std=0.001):
    out = {"rho": {"mean": rho, "std": std}, "rl2_x100": {"mean": rl2, "std": std}, "l2": {"mean": 40.0, "std": 1.0}}
    if aiou:
        out["aiou50"] = {"mean": aiou[0], "std": 0.01}
        out["aiou75"] = {"mean": aiou[1], "std": 0.02}
    return out


def write_metrics(folder, variant, method, mode, honest, paper, **extra):
    data = {"variant": variant, "method": method, "exemplar_mode": mode, "footage": "stand-in",
            "seeds": [0, 1, 2], "honest": honest, "paper": paper, **extra}
    (folder / f"{variant}.json").write_text(json.dumps(data))


@pytest.fixture()
def report(tmp_path, repo_params):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    by_m = {str(m): {"honest": summary(0.5 + m / 100, 1.0 - m / 100, (0.6, 0.2))} for m in (1, 5, 10)}
    write_metrics(metrics, "tsa-dn", "tsa", "dn", summary(0.7, 0.9, (0.8, 0.3)), summary(0.75, 0.8, (0.85, 0.35)),
                  by_num_exemplars=by_m,
                  gt_transitions={"honest": summary(0.72, 0.85), "paper": summary(0.77, 0.79)})
    write_metrics(metrics, "fr-nodn", "fr", "nodn", summary(0.6, 1.2), summary(0.65, 1.1))
    tables = tmp_path / "tables"
    make_report(metrics_dir=metrics, tables_dir=tables, params=repo_params)
    return tables


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def row(rows, method, result):
    (found,) = [r for r in rows if r[0] == method and r[1] == result]
    return found


def test_all_files_written(report):
    for n in (2, 3, 4):
        for ext in ("md", "csv", "tex"):
            assert (report / f"finediving_table{n}.{ext}").stat().st_size > 0


def test_table2(report):
    rows = read_rows(report / "finediving_table2.csv")
    assert rows[0] == ["Method", "Result", "w/o DN rho", "w/o DN R-l2", "w/ DN rho", "w/ DN R-l2"]
    assert [r[0] for r in rows[1:]] == ["USDL"] * 3 + ["MUSDL"] * 3 + ["CoRe"] * 3 + ["TSA"] * 3
    assert row(rows, "CoRe", "published")[2:] == ["0.8631", "0.5565", "0.9061", "0.3615"]
    assert row(rows, "USDL", "ours, honest")[2:] == [NOT_RUN] * 4
    tsa = row(rows, "TSA", "ours, honest")
    assert tsa[2:4] == [NOT_RUN, NOT_RUN]  # w/o DN not run
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
    assert fr[2:6] == ["0.6000 ± 0.0010", "1.2000 ± 0.0010", "–", "–"] and fr[6:] == [NOT_RUN] * 4
    tsa = row(rows, "TSA", "ours, honest")
    assert tsa[8:] == ["80.00 ± 1.00", "30.00 ± 2.00"]  # fractions printed in %
    dagger = row(rows, "TSA-dagger", "ours, paper protocol")  # from tsa-dn's gt_transitions block
    assert dagger[6:8] == ["0.7700 ± 0.0010", "0.7900 ± 0.0010"]
    assert row(rows, "F+R#", "ours, paper protocol")[2:] == [NOT_RUN] * 8


def test_table4(report, repo_params):
    rows = read_rows(report / "finediving_table4.csv")
    assert rows[0] == ["M", "Result", "rho", "R-l2", "AIoU@0.5", "AIoU@0.75"]
    counts = [str(m) for m in repo_params["make_report"]["exemplar_counts"]]
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


def test_no_metrics_at_all(tmp_path, repo_params):
    (tmp_path / "m").mkdir()
    make_report(metrics_dir=tmp_path / "m", tables_dir=tmp_path / "t", params=repo_params)
    rows = read_rows(tmp_path / "t" / "finediving_table2.csv")
    assert all(r[2:] == [NOT_RUN] * 4 for r in rows[1:] if r[1] != "published")
    assert "stand-in" in (tmp_path / "t" / "finediving_table2.md").read_text()


def test_bad_json_is_refused(tmp_path, repo_params):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "tsa-dn.json").write_text("{not json")
    with pytest.raises(ValueError, match="tsa-dn.json"):
        make_report(metrics_dir=tmp_path / "m", tables_dir=tmp_path / "t", params=repo_params)
