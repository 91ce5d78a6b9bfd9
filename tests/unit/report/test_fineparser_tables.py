"""FineParser's five tables (make_report) on generated metrics files in the evaluate stage's format
(per-seed values, their mean ± std, provenance from the params; FineParser's mask keys and
mask_references as agreed with the evaluation): published numbers as transcribed from the paper,
ours from the per-seed values, "not run" rows saying how to run them, this project's labels."""

from __future__ import annotations

import copy
import json
import random
import re
import statistics
from functools import partial

import pytest

from aqa.errors import AqaError
from aqa.provenance import metrics_provenance
from aqa.report import fineparser_variants as fpv
from aqa.report.tables import NOT_RUN, make_report
from table_helpers import read_rows, row as exact_row

row = partial(exact_row, prefix=True)   # the result cell starts with the text asked

INPUTS = {"annotations": "a" * 64, "features": "f" * 64, "code": "c" * 64}
SEEDS = [0, 1, 2]
NAMES = [f"fineparser_table{n}" for n in (1, 2, 3, 4, 5)]

# FineParser paper (Xu et al., CVPR 2024), as ../shared/docs/FINEPARSER.md section 6 transcribes it;
# AIoU printed in % (the paper prints fractions: 0.9946 -> 99.46). Independent of published.py.
PAPER_T1 = {"C3D-LSTM": ["0.6969", "1.0767"], "C3D-AVG": ["0.8371", "0.6251"], "MSCADC": ["0.7688", "0.9327"],
            "I3D+MLP": ["0.8776", "0.4967"], "USDL": ["0.8830", "0.4800"], "MUSDL": ["0.9241", "0.3474"],
            "CoRe": ["0.9308", "0.3148"], "TSA": ["0.9324", "0.3022", "92.39", "50.07"],
            "FineParser": ["0.9435", "0.2602", "99.46", "94.67", "0.0408", "0.1273", "–", "0.8357"]}
PAPER_T2 = {"Pose+DCT": ["0.2682", "–"], "C3D-SVR": ["0.7716", "–"], "C3D-LSTM": ["0.8489", "–"],
            "C3D-AVG-STL": ["0.8960", "–"], "C3D-AVG-MTL": ["0.9044", "–"], "USDL": ["0.9231", "0.4680"],
            "MUSDL": ["0.9273", "0.4510"], "TSA-Net": ["0.9422", "–"], "CoRe": ["0.9512", "0.2600"],
            "FineParser": ["0.9585", "0.2411"]}
PAPER_T3 = {"A": ["0.9313", "0.3094"] + ["–"] * 6, "B": ["0.9328", "0.3097"] + ["–"] * 6,
            "C": ["0.9334", "0.3122", "99.07", "90.39"] + ["–"] * 4,
            "D": ["0.9351", "0.2881", "99.20", "89.32"] + ["–"] * 4,
            "E": ["0.9435", "0.2602", "99.46", "94.67", "0.0408", "0.1273", "–", "0.8357"]}
PAPER_T4 = {"2": ["0.9320", "0.2994", "99.87", "93.59", "0.0532", "0.1010", "–", "0.8643"],
            "4": ["0.9435", "0.2602", "99.46", "94.67", "0.0408", "0.1273", "–", "0.8357"],
            "8": ["0.9337", "0.2940", "99.73", "94.93", "0.0535", "0.1057", "–", "0.8616"]}
PAPER_T5 = {"ResNet-18": ["0.9363", "0.2829"], "ResNet-34": ["0.9435", "0.2602"],
            "ResNet-50": ["0.9362", "0.2859"], "ViT-S/16": ["0.9426", "0.2583"]}
HEADER = ["rho", "R-l2", "AIoU@0.5", "AIoU@0.75", "MAE", "F_beta", "max F_beta", "S_m"]
KEYS = ["rho", "rl2_x100", "aiou50", "aiou75", "mask_mae", "mask_fbeta", "mask_fbeta_max", "mask_smeasure"]
REFERENCES = {"all_background": {"mae": 0.0436, "fbeta": 0.0557, "fbeta_max": 0.0557, "smeasure": 0.4861},
              "motion": {"mae": 0.0500, "fbeta": 0.2595, "fbeta_max": 0.2550, "smeasure": 0.5453}}

# FineParser variants the fixture's params train: an ablation by name (as params.yaml names them) or
# its settings written out.
TRAINED_FP = {"fineparser": {"method": "fineparser"},
              "fp_table3_a": {"method": "fineparser", "ablation": "table3_A"},
              "fp_table3_c": {"method": "fineparser", "use_sap": False, "streams": ["i3d"]},
              "fp_sve8": {"method": "fineparser", "sve_tokens": 8}}


def per_seed_values(rng: random.Random, keys: list[str]) -> dict[str, float]:
    """One seed's realistic numbers on the stand-in (rho ~0.5, R-l2 x 100 ~3, AIoU fractions, masks)."""
    ranges = {"rho": (0.3, 0.6), "rl2_x100": (2.0, 6.0), "l2": (100.0, 300.0), "aiou50": (0.3, 0.9),
              "aiou75": (0.0, 0.4), "mask_mae": (0.02, 0.05), "mask_fbeta": (0.1, 0.6),
              "mask_fbeta_max": (0.2, 0.7), "mask_smeasure": (0.5, 0.8)}
    return {k: rng.uniform(*ranges[k]) for k in keys}


def aggregate(per_seed: list[dict], protocol: str) -> dict:
    """The protocol block as evaluate writes it: mean and sample std (ddof 1) over seeds."""
    keys = per_seed[0][protocol]
    return {k: {"mean": statistics.mean(s[protocol][k] for s in per_seed),
                "std": statistics.stdev(s[protocol][k] for s in per_seed)} for k in keys}


def write_metrics(folder, params, variant, keys, seed, dataset="finediving", seeds=SEEDS, **extra):
    """A metrics file in evaluate's format from `params` (provenance included): per_seed, then the
    honest and paper blocks aggregated from it."""
    rng = random.Random(seed)
    base, _, mode = variant.rpartition("-")
    per_seed = [{"seed": s, "best_epoch": 3, "honest": per_seed_values(rng, ["l2"] + keys),
                 "paper": per_seed_values(rng, ["l2"] + keys)} for s in seeds]
    data = {"variant": variant, "method": params["train"]["variants"][base]["method"], "exemplar_mode": mode,
            "dataset": dataset, "footage": "stand-in", "seeds": seeds, "scoring": "voting",
            "honest": aggregate(per_seed, "honest"), "paper": aggregate(per_seed, "paper"), "per_seed": per_seed,
            "provenance": metrics_provenance(params, base, mode, dataset, inputs=INPUTS, models={}), **extra}
    (folder / f"{variant}.json").write_text(json.dumps(data))
    return data


@pytest.fixture()
def params(repo_params):
    """TSA, I3D+MLP and four FineParser variants on FineDiving, CoRe on MTL-AQA, both modes."""
    p = copy.deepcopy(repo_params)
    p["train"]["variants"] = {"tsa": {"method": "tsa"}, "i3d_mlp": {"method": "i3d_mlp"},
                              "core": {"method": "core"}, **copy.deepcopy(TRAINED_FP),
                              "fp_sve2": {"method": "fineparser", "ablation": "table4_2"}}  # defined, not trained
    p["train"]["exemplar_modes"] = ["dn", "nodn"]
    p["datasets"]["variants"] = {"finediving": ["tsa", "i3d_mlp", *TRAINED_FP], "mtl_aqa": ["core"]}
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": []}
    p["make_report"]["table4_variant"] = "tsa"
    p["extract_features"]["fineparser"]["finediving"] = True   # the cache additions the FineParser variants read
    return p


def fp_keys(variant: str) -> list[str]:
    """The metrics a FineParser variant has: no AIoU without TAP (A), no mask metrics without SAP (C)."""
    keys = ["rho", "rl2_x100"]
    if variant != "fp_table3_a":
        keys += ["aiou50", "aiou75"]
    if variant != "fp_table3_c":
        keys += ["mask_mae", "mask_fbeta", "mask_fbeta_max", "mask_smeasure"]
    return keys


@pytest.fixture()
def written(tmp_path, params):
    """The metrics root (finediving/, mtl_aqa/) and every file's JSON by `<variant>-<mode>`."""
    root = tmp_path / "metrics"
    (root / "finediving").mkdir(parents=True)
    (root / "mtl_aqa").mkdir()
    files = {}
    for i, mode in enumerate(("dn", "nodn")):
        files[f"tsa-{mode}"] = write_metrics(root / "finediving", params, f"tsa-{mode}",
                                             ["rho", "rl2_x100", "aiou50", "aiou75"], 10 + i)
        files[f"i3d_mlp-{mode}"] = write_metrics(root / "finediving", params, f"i3d_mlp-{mode}",
                                                 ["rho", "rl2_x100"], 20 + i, scoring="direct")
        for j, variant in enumerate(TRAINED_FP):
            extra = {"mask_references": REFERENCES} if variant == "fineparser" else {}
            files[f"{variant}-{mode}"] = write_metrics(root / "finediving", params, f"{variant}-{mode}",
                                                       fp_keys(variant), 30 + 10 * j + i, **extra)
        files[f"mtl_aqa/core-{mode}"] = write_metrics(root / "mtl_aqa", params, f"core-{mode}",
                                                      ["rho", "rl2_x100"], 90 + i, dataset="mtl_aqa")
    return root, files


@pytest.fixture()
def report(tmp_path, written, params):
    tables = tmp_path / "tables"
    make_report(metrics_dir=written[0], tables_dir=tables, params=params)
    return tables




def expected(data: dict, protocol: str, key: str) -> str:
    """mean ± std recomputed from the file's per-seed values; "–" when the variant lacks the metric."""
    values = [s[protocol][key] for s in data["per_seed"] if key in s[protocol]]
    if not values:
        return "–"
    scale, digits = (100.0, 2) if key in ("aiou50", "aiou75") else (1.0, 4)
    return f"{statistics.mean(values) * scale:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def ours_rows(data: dict[str, dict], variant: str, keys: list[str], labels=("w/ DN", "w/o DN")) -> dict:
    """(result label) -> expected cells, for both modes and both protocols."""
    out = {}
    for mode, mlabel in zip(("dn", "nodn"), labels):
        for protocol, plabel in (("honest", "honest"), ("paper", "paper protocol")):
            out[f"ours, {mlabel}, {plabel}"] = [expected(data[f"{variant}-{mode}"], protocol, k) for k in keys]
    return out


# --------------------------------------------------------------------------- files and published numbers


def test_five_tables_written_in_three_formats(report):
    for name in NAMES:
        md, csv_text, tex = (report / f"{name}.{ext}" for ext in ("md", "csv", "tex"))
        assert md.read_text().startswith("**FineParser Table ")
        assert csv_text.read_text().startswith(("Method,Result,", "Modules,Result,", "Duration,Result,",
                                                "SVE backbone,Result,"))
        text = tex.read_text()
        assert rf"\label{{tab:{name}}}" in text and r"\caption{FineParser Table" in text and r"$\pm$" in text
        unescaped = re.sub(r"\\[{}]", "", text)   # LaTeX groups balance: the text's own braces escaped
        assert unescaped.count("{") == unescaped.count("}"), name
    assert r"beta\^{}2 = 0.3" in (report / "fineparser_table1.tex").read_text()
    assert r"`fp\_table3\_b: \{method: fineparser" in (report / "fineparser_table3.tex").read_text()


def test_published_numbers_exact(report):
    for name, paper, keys in (("fineparser_table1", PAPER_T1, 8), ("fineparser_table2", PAPER_T2, 2),
                              ("fineparser_table3", PAPER_T3, 8), ("fineparser_table4", PAPER_T4, 8),
                              ("fineparser_table5", PAPER_T5, 2)):
        rows = read_rows(report / f"{name}.csv")
        assert rows[0][2:] == HEADER[:keys] if keys == 8 else rows[0][2:] == ["rho", "R-l2"]
        published = {r[0].split(":")[0].split(" (")[0]: r[2:] for r in rows[1:] if r[1].startswith("published")}
        for label, cells in paper.items():
            assert published[label][:len(cells)] == cells, (name, label)
            assert set(published[label][len(cells):]) <= {"–"}, (name, label)
    t1 = read_rows(report / "fineparser_table1.csv")
    assert {r[0] for r in t1 if r[1] == "published (not implemented here)"} == {"C3D-LSTM", "C3D-AVG", "MSCADC"}


# --------------------------------------------------------------------------- ours


def test_table1_ours_from_per_seed(report, written):
    _, data = written
    rows = read_rows(report / "fineparser_table1.csv")
    for label, variant in (("FineParser", "fineparser"), ("TSA", "tsa"), ("I3D+MLP", "i3d_mlp")):
        for result, cells in ours_rows(data, variant, KEYS).items():
            assert row(rows, label, result)[2:] == cells, (label, result)
    # honest first, then the paper protocol; w/ DN (the published setting) first
    assert [r[1] for r in rows if r[0] == "FineParser"] == [
        "published", "ours, w/ DN, honest", "ours, w/ DN, paper protocol", "ours, w/o DN, honest",
        "ours, w/o DN, paper protocol"]
    fp = row(rows, "FineParser", "ours, w/ DN, honest")
    assert all("±" in c for c in fp[2:])            # every metric, masks included
    assert row(rows, "TSA", "ours, w/ DN, honest")[6:] == ["–"] * 4   # TSA has no masks
    assert row(rows, "I3D+MLP", "ours, w/ DN, honest")[4:6] == ["–"] * 2  # nor segments


def test_table1_mask_references(report):
    rows = read_rows(report / "fineparser_table1.csv")
    background = row(rows, "All background (trivial mask reference)", "reference")
    assert background[2:] == ["–"] * 4 + ["0.0436", "0.0557", "0.0557", "0.4861"]
    motion = row(rows, "Motion mask (trivial mask reference)", "reference")
    assert motion[6:] == ["0.0500", "0.2595", "0.2550", "0.5453"]


def test_table2_mtl_aqa(report, written):
    _, data = written
    rows = read_rows(report / "fineparser_table2.csv")
    mtl = {k.removeprefix("mtl_aqa/"): v for k, v in data.items() if k.startswith("mtl_aqa/")}
    for result, cells in ours_rows(mtl, "core", ["rho", "rl2_x100"], ("w/ DD", "w/o DD")).items():
        assert row(rows, "CoRe", result)[2:] == cells
    usdl = row(rows, "USDL", "ours, w/ DD, honest")        # a baseline params do not run on MTL-AQA
    assert usdl[2:] == [NOT_RUN] * 2
    fp = row(rows, "FineParser", "ours: not run")
    assert "MTL-AQA annotates neither step transitions nor human masks" in fp[1] and fp[2:] == [NOT_RUN] * 2
    assert [r[1] for r in rows if r[0] == "TSA-Net"] == ["published (not implemented here)"]


def test_table3_rows_and_labels(report, written):
    _, data = written
    rows = read_rows(report / "fineparser_table3.csv")
    labels = list(dict.fromkeys(r[0] for r in rows[1:]))
    assert labels == ["A: SAP only (this project's construction)", "B: SVE only (this project's construction)",
                      "C: TAP only (this project's construction)", "D: SVE + TAP (this project's construction)",
                      "E: SAP + SVE + TAP"]
    for label, variant in ((labels[0], "fp_table3_a"), (labels[2], "fp_table3_c"), (labels[4], "fineparser")):
        for result, cells in ours_rows(data, variant, KEYS).items():
            assert row(rows, label, result)[2:] == cells, (label, result)
    assert row(rows, labels[0], "ours, w/ DN, honest")[4:6] == ["–", "–"]    # A: no TAP, no AIoU
    assert row(rows, labels[2], "ours, w/ DN, paper protocol")[6:] == ["–"] * 4  # C: no SAP, no masks
    md = (report / "fineparser_table3.md").read_text()
    assert "rows A-D are this project's construction" in md


def test_not_run_rows_say_how_to_run(report):
    t3 = read_rows(report / "fineparser_table3.csv")
    (b,) = [r for r in t3 if r[0].startswith("B:") and r[1].startswith("ours")]
    assert b[2:] == [NOT_RUN] * 8
    assert "`fp_table3_b`" in b[1] and "datasets.dn_only.finediving" in b[1]
    assert b[1].endswith("to run it add `fp_table3_b` to datasets.dn_only.finediving (w/ DN, the published setting; "
                         "datasets.variants: both modes) and `fp_table3_b: {method: fineparser, ablation: table3_B}` "
                         "to train.variants, then dvc repro (or `make fineparser`))")
    t4 = read_rows(report / "fineparser_table4.csv")
    (two,) = [r for r in t4 if r[0] == "2" and r[1].startswith("ours")]
    # defined in train.variants already: only the datasets line is missing
    assert two[1].endswith("add `fp_sve2` to datasets.dn_only.finediving (w/ DN, the published setting; "
                           "datasets.variants: both modes), then dvc repro (or `make fineparser`))")
    assert two[2:] == [NOT_RUN] * 8
    assert row(t4, "8", "ours, w/o DN, honest")[2] != NOT_RUN        # fp_sve8 ran
    assert row(t4, "4 (the main model)", "ours, w/ DN, honest")[2:] == \
        row(t3, "E: SAP + SVE + TAP", "ours, w/ DN, honest")[2:]                # the same variant
    t5 = read_rows(report / "fineparser_table5.csv")
    (r34,) = [r for r in t5 if r[0] == "ResNet-34" and r[1].startswith("ours")]
    assert "`fp_resnet34: {method: fineparser, ablation: table5_resnet34}`" in r34[1]
    assert "extract_features.sve_backbone: resnet34" in r34[1] and "resnet34-b627a593.pth" in r34[1]
    assert r34[2:] == [NOT_RUN] * 2
    for name in ("ResNet-18", "ResNet-50", "ViT-S/16"):
        (r,) = [r for r in t5 if r[0] == name and r[1].startswith("ours")]
        assert r[1].startswith("ours: not available (no pretrained weights") and r[2:] == ["–", "–"]
    i3d2d = row(t5, "I3D-2D (ours, the default; a named deviation)", "ours, w/ DN, honest")
    assert i3d2d[2:] == row(read_rows(report / "fineparser_table1.csv"), "FineParser", "ours, w/ DN, honest")[2:4]


def test_a_mode_the_params_do_not_train_is_not_run(tmp_path, written, params):
    now = copy.deepcopy(params)
    now["train"]["exemplar_modes"] = ["dn"]
    root, data = written
    for name in list(data):
        if name.endswith("-dn"):
            folder = root / ("mtl_aqa" if name.startswith("mtl_aqa/") else "finediving")
            base = name.removeprefix("mtl_aqa/").removesuffix("-dn")
            dataset = "mtl_aqa" if name.startswith("mtl_aqa/") else "finediving"
            keys = list(data[name]["per_seed"][0]["honest"].keys() - {"l2"})
            extra = {"mask_references": REFERENCES} if base == "fineparser" else {}
            write_metrics(folder, now, f"{base}-dn", sorted(keys), 1, dataset=dataset, **extra)
    make_report(metrics_dir=root, tables_dir=tmp_path / "t", params=now)
    rows = read_rows(tmp_path / "t" / "fineparser_table1.csv")
    assert row(rows, "FineParser", "ours, w/o DN, honest")[2:] == [NOT_RUN] * 8
    assert row(rows, "FineParser", "ours, w/ DN, honest")[2] != NOT_RUN


def test_flat_mask_keys_read(tmp_path, written, params):
    """A protocol block may hold a mask metric as a bare number with `<key>_std` beside it."""
    root, data = written
    path = root / "finediving" / "fineparser-dn.json"
    flat = json.loads(path.read_text())
    for protocol in ("honest", "paper"):
        block = flat[protocol]
        for key in ("mask_mae", "mask_fbeta", "mask_fbeta_max", "mask_smeasure"):
            summary = block.pop(key)
            block[key], block[f"{key}_std"] = summary["mean"], summary["std"]
    path.write_text(json.dumps(flat))
    make_report(metrics_dir=root, tables_dir=tmp_path / "t", params=params)
    rows = read_rows(tmp_path / "t" / "fineparser_table1.csv")
    assert row(rows, "FineParser", "ours, w/ DN, paper protocol")[6:] == \
        [expected(data["fineparser-dn"], "paper", k) for k in KEYS[4:]]


# --------------------------------------------------------------------------- the default, refusals, the other tables


def test_params_that_train_no_fineparser_variant(tmp_path, repo_params):
    """Params that train no FineParser variant: every FineParser row of ours says not run and why; the
    mask references say where they come from."""
    p = copy.deepcopy(repo_params)
    p["datasets"]["variants"] = {"finediving": ["tsa"], "mtl_aqa": []}
    p["datasets"]["dn_only"] = {"finediving": [], "mtl_aqa": []}
    p["train"]["exemplar_modes"] = ["dn"]
    p["make_report"]["exemplar_counts"] = [10]
    root = tmp_path / "metrics"
    (root / "finediving").mkdir(parents=True)
    (root / "mtl_aqa").mkdir()
    tsa = write_metrics(root / "finediving", p, "tsa-dn", ["rho", "rl2_x100", "aiou50", "aiou75"], 5)
    tsa_path = root / "finediving" / "tsa-dn.json"
    tsa["by_num_exemplars"] = {"10": {"honest": tsa["honest"]}}
    tsa_path.write_text(json.dumps(tsa))
    make_report(metrics_dir=root, tables_dir=tmp_path / "t", params=p)
    for name in NAMES:
        assert (tmp_path / "t" / f"{name}.md").is_file()
    t1 = read_rows(tmp_path / "t" / "fineparser_table1.csv")
    fp = row(t1, "FineParser", "ours: not run")
    assert "params do not train fineparser (the main model)" in fp[1] and fp[2:] == [NOT_RUN] * 8
    assert row(t1, "All background (trivial mask reference)", "not run")[6:] == [NOT_RUN] * 4
    for n, count in ((3, 5), (4, 3), (5, 2)):
        rows = read_rows(tmp_path / "t" / f"fineparser_table{n}.csv")
        not_run = [r for r in rows if r[1].startswith("ours: not run (params do not train")]
        assert len(not_run) == count, n
        assert all(set(r[2:]) == {NOT_RUN} for r in not_run)
    assert "1 seed(s)" not in (tmp_path / "t" / "fineparser_table3.md").read_text()  # nothing ran: params' seeds


def test_mislabelled_variant_refused(tmp_path, written, params):
    now = copy.deepcopy(params)
    now["train"]["variants"]["fp_table3_c"]["use_sap"] = True      # row C is "TAP only": no SAP
    now["train"]["variants"]["fp_table3_a"]["ablation"] = "table3_B"
    for variant in ("fp_table3_a", "fp_table3_c"):   # evaluated from these params: only the label is wrong
        for mode in ("dn", "nodn"):
            write_metrics(written[0] / "finediving", now, f"{variant}-{mode}", fp_keys(variant), 1)
    with pytest.raises(AqaError) as err:
        make_report(metrics_dir=written[0], tables_dir=tmp_path / "t", params=now)
    message = str(err.value)
    assert "\n" not in message and "train.variants.fp_table3_a" in message and "ablation 'table3_B'" in message
    assert not (tmp_path / "t").exists()
    now["train"]["variants"]["fp_table3_a"]["ablation"] = "table3_A"
    for mode in ("dn", "nodn"):
        write_metrics(written[0] / "finediving", now, f"fp_table3_a-{mode}", fp_keys("fp_table3_a"), 1)
    with pytest.raises(AqaError, match=r"train\.variants\.fp_table3_c: .*use_sap: true"):
        make_report(metrics_dir=written[0], tables_dir=tmp_path / "t", params=now)


def test_another_method_under_a_fineparser_name_refused(tmp_path, written, params):
    now = copy.deepcopy(params)
    now["train"]["variants"]["fp_sve8"] = {"method": "tsa"}
    for mode in ("dn", "nodn"):
        write_metrics(written[0] / "finediving", now, f"fp_sve8-{mode}", ["rho", "rl2_x100"], 1)
    with pytest.raises(AqaError, match="fp_sve8.*method 'tsa'"):
        make_report(metrics_dir=written[0], tables_dir=tmp_path / "t", params=now)


def test_mapping_names_known_ablations():
    """Every variant of the mapping names an ablation of the model and fills one row."""
    from aqa.models.fineparser_ablations import ABLATIONS

    assert set(fpv.VARIANTS.values()) <= set(ABLATIONS)
    rows = [v for _, v in fpv.TABLE3 + fpv.TABLE4 + fpv.TABLE5]
    assert set(rows) == set(fpv.VARIANTS)
    assert [fpv.is_ours(v) for _, v in fpv.TABLE3] == [True, True, True, True, False]
    assert fpv.metrics_name("fp_sve2", "dn") == "fp_sve2-dn"


def test_existing_tables_unchanged_by_fineparser_variants(tmp_path, written, params):
    """The FineDiving and MTL-AQA tables are the same bytes whether or not FineParser variants ran."""
    root, _ = written
    make_report(metrics_dir=root, tables_dir=tmp_path / "with", params=params)
    without = copy.deepcopy(params)
    without["datasets"]["variants"]["finediving"] = ["tsa", "i3d_mlp"]
    for variant in TRAINED_FP:
        del without["train"]["variants"][variant]
    make_report(metrics_dir=root, tables_dir=tmp_path / "without", params=without)
    for name in ("finediving_table2", "finediving_table3", "finediving_table4", "mtl_aqa"):
        for ext in ("md", "csv", "tex"):
            assert (tmp_path / "with" / f"{name}.{ext}").read_bytes() == \
                (tmp_path / "without" / f"{name}.{ext}").read_bytes()
    assert (tmp_path / "with" / "fineparser_table1.md").read_bytes() != \
        (tmp_path / "without" / "fineparser_table1.md").read_bytes()


def test_i3d2d_row_not_filled_from_another_cached_backbone(tmp_path, written, params):
    """The cache holds one SVE backbone: with ResNet-34's features the main model is not the I3D-2D row."""
    now = copy.deepcopy(params)
    now["extract_features"]["sve_backbone"] = "resnet34"
    make_report(metrics_dir=written[0], tables_dir=tmp_path / "t", params=now)
    rows = read_rows(tmp_path / "t" / "fineparser_table5.csv")
    (i3d2d,) = [r for r in rows if r[0].startswith("I3D-2D") and r[1].startswith("ours")]
    assert "the cache's SVE features are resnet34's" in i3d2d[1] and i3d2d[2:] == [NOT_RUN] * 2


def test_not_run_rows_name_the_cache_additions_when_they_are_off(repo_params):
    from aqa.report.fineparser_variants import how_to_run

    p = copy.deepcopy(repo_params)
    p["datasets"]["dn_only"]["finediving"] = []
    p["extract_features"]["fineparser"]["finediving"] = False
    assert how_to_run("fineparser", p).endswith(
        "add `fineparser` to datasets.dn_only.finediving (w/ DN, the published setting; datasets.variants: both "
        "modes), set extract_features.fineparser.finediving: true, then dvc repro")
    # the built-in default has the additions: an ablation needs its list entry alone (`make fineparser` adds it)
    assert how_to_run("fp_table3_a", repo_params).endswith(
        "add `fp_table3_a` to datasets.dn_only.finediving (w/ DN, the published setting; datasets.variants: both "
        "modes), then dvc repro (or `make fineparser`)")


def test_the_default_layout_fineparser_w_dn_only_with_its_own_seeds(tmp_path, repo_params):
    """As the built-in default trains it: fineparser in datasets.dn_only with seeds [0, 1] beside TSA in
    both modes with train.seeds [0, 1, 2]. Its w/ DN rows hold numbers, its w/o DN rows say not run, and
    the captions name each variant's seeds; without its metrics the report names its stage."""
    p = copy.deepcopy(repo_params)
    p["datasets"]["variants"] = {"finediving": ["tsa"], "mtl_aqa": []}
    p["make_report"]["exemplar_counts"] = [10]
    assert "fineparser" in p["datasets"]["dn_only"]["finediving"] and p["train"]["seeds"] == [0, 1, 2]
    p["datasets"]["dn_only"] = {"finediving": ["fineparser"], "mtl_aqa": []}   # MUSDL's: test_same_model_cells
    root = tmp_path / "metrics"
    (root / "finediving").mkdir(parents=True)
    (root / "mtl_aqa").mkdir()
    for i, mode in enumerate(("dn", "nodn")):
        tsa = write_metrics(root / "finediving", p, f"tsa-{mode}", ["rho", "rl2_x100", "aiou50", "aiou75"], 5 + i)
        tsa["by_num_exemplars"] = {"10": {"honest": tsa["honest"]}}
        (root / "finediving" / f"tsa-{mode}.json").write_text(json.dumps(tsa))
    with pytest.raises(AqaError, match=r"fineparser-dn.json: no metrics for fineparser-dn.*"
                                       r"dvc repro evaluate_dn@fineparser-dn\)$"):
        make_report(metrics_dir=root, tables_dir=tmp_path / "t", params=p)
    write_metrics(root / "finediving", p, "fineparser-dn", fp_keys("fineparser"), 7, seeds=[0, 1],
                  mask_references=REFERENCES)
    make_report(metrics_dir=root, tables_dir=tmp_path / "t", params=p)
    t1 = read_rows(tmp_path / "t" / "fineparser_table1.csv")
    assert NOT_RUN not in row(t1, "FineParser", "ours, w/ DN, honest")[2:]
    assert row(t1, "FineParser", "ours, w/o DN, honest")[2:] == [NOT_RUN] * 8
    t1_md = (tmp_path / "t" / "fineparser_table1.md").read_text()
    assert "mean ± std over each variant's seeds (fineparser: 0, 1; tsa: 0, 1, 2)" in t1_md
    assert "mean ± std over 2 seed(s) (0, 1)" in (tmp_path / "t" / "fineparser_table3.md").read_text()
    assert "mean ± std over 3 seed(s) (0, 1, 2)" in (tmp_path / "t" / "finediving_table2.md").read_text()
