"""make_report's MTL-AQA table on generated metrics files (the layout of evaluate's JSON, the
metrics root's mtl_aqa/ folder): published numbers beside ours, "not run", "not applicable"."""

from __future__ import annotations

import copy
from functools import partial

import pytest

from aqa.errors import AqaError
from aqa.report.tables import NOT_RUN, make_report
from test_tables import summary, write_metrics
from table_helpers import read_rows, row as exact_row

row = partial(exact_row, prefix=True)   # the result cell starts with the text asked

BASELINES = {"i3d_mlp": {"method": "i3d_mlp"}, "usdl": {"method": "usdl"}, "musdl": {"method": "musdl"},
             "core": {"method": "core"}}


@pytest.fixture()
def params(repo_params):
    """FineDiving trains nothing; MTL-AQA trains USDL, CoRe and F+R in both modes (MUSDL, I3D+MLP not)."""
    p = copy.deepcopy(repo_params)
    p["train"]["variants"] = {"fr": {"method": "fr"}, "tsa": {"method": "tsa"}, **BASELINES}
    p["train"]["exemplar_modes"] = ["dn", "nodn"]
    p["datasets"]["variants"] = {"finediving": [], "mtl_aqa": ["usdl", "core", "fr"]}
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": []}
    p["make_report"]["table4_variant"] = "tsa"
    return p


@pytest.fixture()
def metrics(tmp_path, params):
    root = tmp_path / "metrics"
    folder = root / "mtl_aqa"
    folder.mkdir(parents=True)
    for variant, rho in (("usdl", 0.5), ("core", 0.6), ("fr", 0.4)):
        for mode, bonus in (("nodn", 0.0), ("dn", 0.1)):
            write_metrics(folder, params, f"{variant}-{mode}", summary(rho + bonus, 2.0 - rho),
                          summary(rho + bonus + 0.05, 1.9 - rho), dataset="mtl_aqa")
    return root




def test_mtl_aqa_table(tmp_path, metrics, params):
    make_report(metrics_dir=metrics, tables_dir=tmp_path / "t", params=params)
    for ext in ("md", "csv", "tex"):
        assert (tmp_path / "t" / f"mtl_aqa.{ext}").stat().st_size > 0
    rows = read_rows(tmp_path / "t" / "mtl_aqa.csv")
    assert rows[0] == ["Method", "Result", "w/o DD rho", "w/o DD R-l2", "w/ DD rho", "w/ DD R-l2"]
    assert list(dict.fromkeys(r[0] for r in rows[1:])) == ["I3D+MLP", "USDL", "MUSDL", "CoRe", "TSA",
                                                           "FineParser", "F+R"]
    # published, BASELINES.md section 2: CoRe w/o DD and w/ DD, USDL w/o DD (rho only), I3D+MLP w/ DD
    assert row(rows, "CoRe", "published")[2:] == ["0.9341", "0.3650", "0.9512", "0.2600"]
    assert row(rows, "USDL", "published")[2:] == ["0.9066", "–", "0.9231", "0.4680"]
    assert row(rows, "MUSDL", "published")[2:] == ["–", "–", "0.9273", "0.4510"]
    assert row(rows, "I3D+MLP", "published")[2:] == ["–", "–", "0.9381", "0.3940"]
    assert row(rows, "FineParser", "published")[2:] == ["–", "–", "0.9585", "0.2411"]
    # ours, from the metrics files
    assert row(rows, "CoRe", "ours, honest")[2:] == ["0.6000 ± 0.0010", "1.4000 ± 0.0010",
                                                     "0.7000 ± 0.0010", "1.4000 ± 0.0010"]
    assert row(rows, "USDL", "ours, paper protocol")[4] == "0.6500 ± 0.0010"
    assert row(rows, "F+R", "ours, honest")[2] == "0.4000 ± 0.0010"  # another variant MTL-AQA trains
    # not run: params do not train them on MTL-AQA
    assert row(rows, "MUSDL", "ours, honest")[2:] == [NOT_RUN] * 4
    assert row(rows, "I3D+MLP", "ours, paper protocol")[2:] == [NOT_RUN] * 4
    # not applicable, with the reason
    tsa = row(rows, "TSA", "ours")
    assert tsa[1] == ("ours: not applicable (needs step labels (the step transitions its PSNet learns), which "
                      "MTL-AQA does not annotate)") and tsa[2:] == ["not applicable"] * 4
    assert "human masks" in row(rows, "FineParser", "ours")[1]
    md = (tmp_path / "t" / "mtl_aqa.md").read_text()
    assert "sampled MTL-AQA-shaped annotation set" in md and "3 seed(s) (0, 1, 2)" in md
    assert "CoRe (Yu et al., ICCV 2021" in md and "FineParser (Xu et al., CVPR 2024), Table 2" in md


def test_caption_names_the_real_annotations_when_rendered_for_them(tmp_path, metrics, params):
    params["synthesize_videos"]["mtl_aqa"]["source_annotations"] = "../shared/data/MTL-AQA"
    make_report(metrics_dir=metrics, tables_dir=tmp_path / "t", params=params)
    md = (tmp_path / "t" / "mtl_aqa.md").read_text()
    assert "rendered by synthesize_videos for the real MTL-AQA annotations" in md


def test_nothing_trained_on_mtl_aqa_shows_not_run(tmp_path, params):
    params["datasets"]["variants"]["mtl_aqa"] = []
    (tmp_path / "metrics").mkdir()
    make_report(metrics_dir=tmp_path / "metrics", tables_dir=tmp_path / "t", params=params)
    rows = read_rows(tmp_path / "t" / "mtl_aqa.csv")
    assert row(rows, "CoRe", "ours, honest")[2:] == [NOT_RUN] * 4
    assert row(rows, "TSA", "ours")[2:] == ["not applicable"] * 4


def test_missing_mtl_aqa_metrics_name_the_stage_to_run(tmp_path, metrics, params):
    (metrics / "mtl_aqa" / "core-dn.json").unlink()
    with pytest.raises(AqaError) as err:
        make_report(metrics_dir=metrics, tables_dir=tmp_path / "t", params=params)
    message = str(err.value)
    assert str(metrics / "mtl_aqa" / "core-dn.json") in message and "dvc repro evaluate_mtl_aqa@core-dn" in message
    assert not (tmp_path / "t").exists()


def test_mtl_aqa_metrics_of_other_params_or_dataset_refused(tmp_path, metrics, params):
    now = copy.deepcopy(params)
    now["evaluate"]["num_exemplars"] = 3
    with pytest.raises(AqaError, match=r"usdl-dn.json: made from other params .*evaluate.num_exemplars"):
        make_report(metrics_dir=metrics, tables_dir=tmp_path / "t", params=now)
    # a FineDiving metrics file put in MTL-AQA's folder: its params record names the other dataset
    write_metrics(metrics / "mtl_aqa", params, "core-dn", summary(0.9, 0.3), summary(0.9, 0.3), dataset="finediving")
    with pytest.raises(AqaError, match=r"core-dn.json: made from other params .*dataset: \"finediving\" there, "
                                       r"\"mtl_aqa\" now"):
        make_report(metrics_dir=metrics, tables_dir=tmp_path / "t", params=params)
