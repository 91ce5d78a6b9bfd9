"""`aqa make-figures` on the outputs of real `aqa train` / `aqa evaluate` runs (F+R and TSA, two
seeds): the figures, the flat plot data and the summary, their determinism and refusals, and what
DVC's `plots` and `metrics` commands make of them in a git + DVC repository."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from figures_helpers import BIN, VARIANTS, dvc_project, make_figures, run, trained_project


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = trained_project(tmp_path_factory.mktemp("figures") / "project")
    make_figures(root)
    return root


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_figure_of_each_kind_for_every_variant(project):
    figures = project / "reports/figures/finediving"
    expected = {f"{kind}/{v}.png" for kind in ("curves", "test") for v in VARIANTS} | {"segmentation.png", "table4.png"}
    assert set(_digests(figures)) == expected
    for name in expected:
        image = np.asarray(Image.open(figures / name).convert("L"))
        assert image.shape[0] > 200 and image.shape[1] > 200, name
        assert (image < 128).mean() > 0.01, f"{name}: next to nothing drawn"   # lines, text, points


def test_flat_plot_data_follows_the_histories_and_predictions(project):
    plots = project / "reports/plots"
    for variant in VARIANTS:
        seeds = pd.read_csv(plots / f"seeds/finediving/{variant}.csv")
        mean = pd.read_csv(plots / f"history/finediving/{variant}.csv")
        test = pd.read_csv(plots / f"test/finediving/{variant}.csv")
        segment = variant.startswith("tsa")
        aiou = ["test_aiou50", "test_aiou75"] if segment else []
        assert list(seeds.columns) == ["epoch", "seed", "loss", "val_rho", "test_rho", *aiou]
        metric_cols = ["loss", "val_rho", "test_rho", *aiou]
        assert list(mean.columns) == ["epoch"] + [c for m in metric_cols for c in (m, f"{m}_std")] + ["seeds"]
        assert list(test.columns) == ["key", "seed", "true", "predicted"] + (
            ["pred_t1", "pred_t2", "true_t1", "true_t2"] if segment else [])
        assert sorted(seeds["seed"].unique()) == [0, 1] and mean["seeds"].tolist() == [2, 2, 2]
        # the numbers are the histories' and the predictions' (CSV keeps 6 significant digits)
        for seed in (0, 1):
            history = json.loads((project / f"models/finediving/{variant}/seed{seed}/history.json").read_text())
            one = seeds[seeds["seed"] == seed]
            np.testing.assert_allclose(one["test_rho"], [h["test"]["rho"] for h in history], rtol=1e-5)
            np.testing.assert_allclose(one["loss"], [h["train"]["loss"] for h in history], rtol=1e-5)
            pred = pd.read_parquet(project / f"reports/predictions/finediving/{variant}/seed{seed}.parquet")
            got = test[test["seed"] == seed].set_index("key").loc[pred["key"]]
            np.testing.assert_allclose(got["predicted"], pred["predicted"], rtol=1e-5)
            np.testing.assert_allclose(got["true"], pred["true"], rtol=1e-5)
        np.testing.assert_allclose(mean["val_rho"], seeds.groupby("epoch")["val_rho"].mean(), rtol=1e-5)
        np.testing.assert_allclose(mean["val_rho_std"], seeds.groupby("epoch")["val_rho"].std(ddof=1), rtol=1e-4)


def test_summary_holds_the_headline_numbers_only(project):
    for variant in VARIANTS:
        summary = json.loads((project / f"reports/summary/finediving/{variant}.json").read_text())
        metrics = json.loads((project / f"reports/metrics/finediving/{variant}.json").read_text())
        assert set(summary) == {"honest_rho", "honest_rl2_x100", "paper_rho", "paper_rl2_x100"}
        for key, value in summary.items():
            protocol, metric = key.split("_", 1)
            assert value == pytest.approx(metrics[protocol][metric]["mean"], abs=1e-4)


def test_same_inputs_same_bytes(project, tmp_path):
    """A second run elsewhere gives byte-identical PNGs, CSVs and JSONs (no time or version in them)."""
    make_figures(project, out="again")
    try:
        for kind in ("figures", "plots", "summary"):
            first, second = _digests(project / "reports" / kind), _digests(project / "again" / kind)
            assert first and first == second, kind
    finally:
        shutil.rmtree(project / "again")
    png = (project / "reports/figures/finediving/table4.png").read_bytes()
    assert b"matplotlib" not in png.lower() and b"tIME" not in png


def test_stale_metrics_are_refused_in_one_line_and_nothing_is_replaced(project, tmp_path):
    import yaml

    copy = tmp_path / "copy"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("data", "mlflow.db"))
    before = _digests(copy / "reports/figures")
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["evaluate"]["num_exemplars"] += 1
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = make_figures(copy, ok=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aqa make-figures: error: ") and "fr-dn.json" in lines[0], proc.stderr
    assert "evaluate.num_exemplars" in lines[0]
    assert _digests(copy / "reports/figures") == before

    # a variant trained but never evaluated: its missing predictions named
    params["evaluate"]["num_exemplars"] -= 1
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.rmtree(copy / "reports/predictions/finediving/tsa-dn")
    proc = make_figures(copy, ok=False)
    assert proc.returncode == 1 and "predictions/finediving/tsa-dn" in proc.stderr and "Traceback" not in proc.stderr
    assert _digests(copy / "reports/figures") == before


@pytest.fixture(scope="module")
def dvc_repo(project) -> Path:
    return dvc_project(project)


def test_dvc_metrics_show_fits_160_columns(dvc_repo):
    shown = run([BIN / "dvc", "metrics", "show"], dvc_repo).stdout
    lines = shown.rstrip("\n").splitlines()
    assert max(map(len, lines)) <= 160, shown
    assert lines[0].split() == ["Path", "honest_rho", "honest_rl2_x100", "paper_rho", "paper_rl2_x100"]
    assert {line.split()[0] for line in lines[1:]} == {f"reports/summary/finediving/{v}.json" for v in VARIANTS}
    # the full metrics of one variant, on request
    full = run([BIN / "dvc", "metrics", "show", "reports/metrics/finediving/tsa-dn.json", "--json"], dvc_repo).stdout
    assert "by_num_exemplars" in full


def test_dvc_plots_show_and_diff(dvc_repo, tmp_path):
    dvc = BIN / "dvc"
    output = json.loads(run([dvc, "plots", "show", "--json", "--split"], dvc_repo).stdout)
    assert not output.get("errors"), output["errors"]
    shown = output["data"]
    names = set(shown)
    for variant in VARIANTS:
        for kind in ("history", "seeds", "test"):
            assert f"reports/plots/{kind}/finediving/{variant}.csv" in names
        assert f"reports/figures/finediving/curves/{variant}.png" in names
    history = shown["reports/plots/history/finediving/tsa-dn.csv"][0]
    assert history["type"] == "vega" and history["revisions"] == ["workspace"]
    html = tmp_path / "html"
    run([dvc, "plots", "show", "-o", html], dvc_repo)
    page = (html / "index.html").read_text()
    assert page.count("vegaEmbed(") == 3 * len(VARIANTS)
    # a change of the plot data is drawn against the committed revision
    seeds_csv = dvc_repo / "reports/plots/seeds/finediving/fr-dn.csv"
    committed = seeds_csv.read_text()
    try:
        table = pd.read_csv(seeds_csv)
        table["test_rho"] = table["test_rho"] * 0.5
        seeds_csv.write_text(table.to_csv(index=False))
        diff = json.loads(run([dvc, "plots", "diff", "HEAD", "--json", "--split", "--targets",
                               "reports/plots/seeds/finediving/fr-dn.csv"], dvc_repo).stdout)["data"]
        (spec,) = diff["reports/plots/seeds/finediving/fr-dn.csv"]
        assert set(spec["revisions"]) == {"HEAD", "workspace"}
        points = spec["anchor_definitions"]["<DVC_METRIC_DATA>"]
        by_rev = {rev: sorted(float(p["test_rho"]) for p in points if p["rev"] == rev) for rev in ("HEAD", "workspace")}
        np.testing.assert_allclose(by_rev["workspace"], sorted(0.5 * np.array(by_rev["HEAD"])), rtol=1e-5)
    finally:
        seeds_csv.write_text(committed)


# --------------------------------------------------------------------------- the page in a browser

ASSETS = Path(__file__).resolve().parents[2] / ".browser"   # .ci/install-browser puts the scripts there
CDN = re.compile(r'<script src="(https://cdn\.jsdelivr\.net/npm/([a-z-]+@[0-9.]+))"></script>')


def _chromium() -> str:
    found = shutil.which("chromium")
    missing = [what for what, ok in (("chromium", found), (f"{ASSETS}", ASSETS.is_dir())) if not ok]
    if missing:
        message = f"{' and '.join(missing)} not installed: run `bash .ci/install-browser`"
        if os.environ.get("CI"):
            pytest.fail(message)   # CI installs them (.ci/run): their absence there is a failure
        pytest.skip(message)
    return found


@pytest.mark.browser
def test_dvc_plots_page_renders_in_headless_chromium(dvc_repo, tmp_path):
    """The HTML page of `dvc plots show`, opened in Debian's chromium (headless): every Vega-Lite
    plot is drawn (a canvas of its size in each plot's element, no error text) and the screenshot
    shows lines in the plot area. DVC's page loads vega, vega-lite and vega-embed from a CDN, which
    CI cannot reach: the same versions, from npm (.ci/install-browser), stand in for them."""
    chromium = _chromium()
    html = tmp_path / "html"
    run([BIN / "dvc", "plots", "show", "-o", html], dvc_repo)
    page = (html / "index.html").read_text()
    scripts = CDN.findall(page)
    assert sorted(name.split("@")[0] for _, name in scripts) == ["vega", "vega-embed", "vega-lite"], scripts
    for url, name in scripts:
        local = ASSETS / f"{name}.js"
        assert local.is_file(), f"{local}: DVC's page wants {url}; pin that version in .ci/install-browser"
        page = page.replace(url, local.as_uri())
    local_page = html / "offline.html"
    local_page.write_text(page)
    plot_ids = re.findall(r'<div id = "(reports_plots_[^"]+)">', page)
    assert len(plot_ids) == 3 * len(VARIANTS)

    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000"]
    dom = subprocess.run([*common, "--dump-dom", local_page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    for plot_id in plot_ids:
        start = dom.index(f'<div id="{plot_id}"')
        element = dom[start:dom.index("</details>", start)]
        canvas = re.search(r'<canvas width="(\d+)" height="(\d+)"', element)
        assert canvas and int(canvas.group(1)) > 200 and int(canvas.group(2)) > 150, (plot_id, element[:500])
        assert "error" not in element.lower(), (plot_id, element[:500])

    shot = tmp_path / "page.png"
    subprocess.run([*common, "--window-size=1280,1000", f"--screenshot={shot}", local_page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    first_plot = pixels[40:330, 40:360]         # the first plot's area (history of fr-dn, 300 x 300 px)
    drawn = (np.abs(first_plot - 255).sum(axis=2) > 60).mean()
    colored = (np.ptp(first_plot, axis=2) > 60).mean()   # the lines are colored, axes and text gray
    assert drawn > 0.02 and colored > 0.002, (drawn, colored, shot)
