"""The make_figures stage: figures of every trained variant, DVC's plot data and a compact summary.

For every dataset of `datasets.run` and every `<variant>-<mode>` it trains (the metrics checked
against the current params as make_report checks them, aqa.report.tables.load_metrics):

- `<figures>/<dataset>/curves/<variant>.png`: training loss, validation and test rho over epochs
  (mean over seeds, a band of ± one std, each seed a thin line);
- `<figures>/<dataset>/test/<variant>.png`: predicted vs true score of the test dives (every seed);
- `<figures>/<dataset>/segmentation.png` (datasets with a variant that segments: F+S+R, TSA):
  AIoU@0.5 / @0.75 per variant and the error of each predicted transition;
- `<figures>/finediving/table4.png`: Table 4 (rho and R-l2 against the number of exemplars M);
- `<plots>/{history,seeds,test}/<dataset>/<variant>.csv`: the flat data of DVC's `plots:`
  (aqa.report.plots_data);
- `<summary>/<dataset>/<variant>.json`: honest and paper rho and R-l2 means, DVC's `metrics:`.

matplotlib with the Agg backend; PNGs carry no timestamp or version (`metadata`), so the same
inputs give the same bytes and DVC's hashes stay put. Each output folder is replaced whole
(aqa.io.atomic_path): nothing is written unless every figure could be drawn.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless, and the only backend whose PNG bytes we pin

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from aqa.data.datasets import FINEDIVING, dataset_spec  # noqa: E402
from aqa.io import atomic_path, write_json_atomic, write_text_atomic  # noqa: E402
from aqa.report import plots_data  # noqa: E402
from aqa.report.published import FINEDIVING_EXEMPLARS  # noqa: E402
from aqa.report.tables import check_table4_variant, load_metrics  # noqa: E402

log = logging.getLogger(__name__)

PNG_METADATA = {"Software": None}  # matplotlib writes its version there otherwise; no time in Agg's PNG
COLORS = {"loss": "tab:gray", "val_rho": "tab:orange", "test_rho": "tab:blue"}
LABELS = {"loss": "training loss", "val_rho": "validation rho", "test_rho": "test rho"}


def _save(fig: Figure, path: Path, dpi: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png", metadata=PNG_METADATA)


def _band(ax, mean: pd.DataFrame, column: str) -> None:
    x, y, s = mean["epoch"], mean[column], mean[f"{column}_std"]
    ax.plot(x, y, color=COLORS[column], lw=2, marker="o", ms=3, label=f"{LABELS[column]} (mean)")
    ax.fill_between(x, y - s, y + s, color=COLORS[column], alpha=0.2, lw=0)


def curves_figure(name: str, title: str, seeds: pd.DataFrame, mean: pd.DataFrame) -> Figure:
    """Loss (left) and validation / test rho (right) over epochs: mean ± std band, seeds thin."""
    fig = Figure(figsize=(9, 3.4))
    loss_ax, rho_ax = fig.subplots(1, 2, gridspec_kw=dict(left=0.08, right=0.98, bottom=0.14, top=0.9, wspace=0.22))
    for ax, columns in ((loss_ax, ("loss",)), (rho_ax, ("val_rho", "test_rho"))):
        for column in columns:
            for _, one in seeds.groupby("seed", sort=True):
                ax.plot(one["epoch"], one[column], color=COLORS[column], lw=0.7, alpha=0.45)
            _band(ax, mean, column)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    loss_ax.set_ylabel("loss")
    rho_ax.set_ylabel("Spearman's rho")
    n = seeds["seed"].nunique()
    fig.suptitle(f"{title}: {name}, training curves (mean ± std over {n} seed(s); thin: each seed)", fontsize=9)
    return fig


def test_figure(name: str, title: str, table: pd.DataFrame, metrics: dict[str, Any]) -> Figure:
    """Predicted against true score of every test dive and seed, with the identity line."""
    fig = Figure(figsize=(4.2, 4.2))
    ax = fig.subplots(gridspec_kw=dict(left=0.16, right=0.97, bottom=0.12, top=0.86))
    for seed, one in table.groupby("seed", sort=True):
        ax.scatter(one["true"], one["predicted"], s=10, alpha=0.6, label=f"seed {seed}")
    low = float(min(table["true"].min(), table["predicted"].min()))
    high = float(max(table["true"].max(), table["predicted"].max()))
    ax.plot([low, high], [low, high], color="black", lw=0.8, ls="--", label="predicted = true")
    ax.set_xlabel("true score")
    ax.set_ylabel("predicted score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    head = plots_data.summary(metrics)
    rho = "–" if head["honest_rho"] is None else f"{head['honest_rho']:.3f}"
    fig.suptitle(f"{title}: {name} on test (honest checkpoint)\nrho {rho} (mean over seeds), "
                 f"{len(table) // max(table['seed'].nunique(), 1)} dives", fontsize=9)
    return fig


def segmentation_figure(title: str, metrics: dict[str, dict], tests: dict[str, pd.DataFrame]) -> Figure:
    """AIoU@0.5 / @0.75 per segmenting variant (honest, mean ± std) and the transition errors."""
    names = sorted(tests)
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    bars, *hists = fig.subplots(1, 3)
    width = 0.38
    x = np.arange(len(names))
    for i, key in enumerate(("aiou50", "aiou75")):
        cells = [((metrics[n].get("honest") or {}).get(key) or {}) for n in names]
        means = [np.nan if c.get("mean") is None else 100 * c["mean"] for c in cells]
        stds = [100 * (c.get("std") or 0.0) for c in cells]
        bars.bar(x + (i - 0.5) * width, means, width, yerr=stds, capsize=3,
                 label=f"AIoU@{'0.5' if key == 'aiou50' else '0.75'}")
    bars.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    bars.set_ylabel("AIoU (%)")
    bars.set_ylim(0, 100)
    bars.legend(fontsize=7)
    bars.set_title("AIoU on test (honest, mean ± std over seeds)", fontsize=9)
    errors = {n: plots_data.transition_errors(tests[n]) for n in names}
    span = max(1.0, max(float(np.abs(e).max()) for e in errors.values()))
    edges = np.linspace(-span, span, 25)
    for t, ax in enumerate(hists):
        for n in names:
            ax.hist(errors[n][:, t], bins=edges, histtype="step", lw=1.4,
                    label=f"{n} (mean |err| {np.abs(errors[n][:, t]).mean():.1f})")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"predicted - true transition {t + 1} (frames of 96)")
        ax.set_ylabel("test dives x seeds")
        ax.legend(fontsize=7)
        ax.set_title(f"transition {t + 1} ({'take-off / flight' if t == 0 else 'flight / entry'})", fontsize=9)
    fig.suptitle(f"{title}: step segmentation of the methods that segment", fontsize=10)
    return fig


def table4_figure(variant: str, result: dict[str, Any], counts: list[int]) -> Figure:
    """Table 4 as a plot: rho and R-l2 x 100 against M (ours honest mean ± std; TSA published)."""
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    by_m = result.get("by_num_exemplars", {})
    for ax, key, label in ((axes[0], "rho", "Spearman's rho"), (axes[1], "rl2_x100", "R-l2 x 100")):
        ms = [m for m in counts if str(m) in by_m]
        cells = [((by_m[str(m)].get("honest") or {}).get(key) or {}) for m in ms]
        ax.errorbar(ms, [np.nan if c.get("mean") is None else c["mean"] for c in cells],
                    yerr=[c.get("std") or 0.0 for c in cells],
                    marker="o", capsize=3, label=f"ours: {variant} (honest)")
        pub = [(m, getattr(FINEDIVING_EXEMPLARS[m], key)) for m in counts if m in FINEDIVING_EXEMPLARS]
        if pub:
            ax.plot(*zip(*pub), marker="s", ls="--", color="tab:red", label="published: TSA")
        ax.set_xlabel("exemplars M")
        ax.set_ylabel(label)
        ax.set_xticks(counts)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Table 4: multi-exemplar voting with M exemplars ({variant}, w/ DN)", fontsize=10)
    return fig


def _dataset_outputs(dataset: str, params: dict[str, Any], *, metrics_dir: Path, predictions_dir: Path,
                     models_dir: Path, figures: Path, plots: Path, summary: Path, dpi: int) -> None:
    title = dataset_spec(dataset).title
    metrics = load_metrics(metrics_dir / dataset, params, dataset)
    tests: dict[str, pd.DataFrame] = {}
    for name in sorted(metrics):
        seeds = plots_data.history(models_dir / dataset / name)
        mean = plots_data.history_mean(seeds)
        test = plots_data.test_predictions(predictions_dir / dataset / name)
        for kind, table in (("history", mean), ("seeds", seeds), ("test", test)):
            write_text_atomic(plots / kind / dataset / f"{name}.csv", plots_data.to_csv(table))
        write_json_atomic(summary / dataset / f"{name}.json", plots_data.summary(metrics[name]))
        _save(curves_figure(name, title, seeds, mean), figures / dataset / "curves" / f"{name}.png", dpi)
        _save(test_figure(name, title, test, metrics[name]), figures / dataset / "test" / f"{name}.png", dpi)
        if plots_data.segments(test):
            tests[name] = test
    if tests:
        _save(segmentation_figure(title, metrics, tests), figures / dataset / "segmentation.png", dpi)
    if dataset == FINEDIVING:
        variant = check_table4_variant(params)
        if variant in metrics and metrics[variant].get("by_num_exemplars"):
            counts = list(params["make_report"]["exemplar_counts"])
            _save(table4_figure(variant, metrics[variant], counts), figures / dataset / "table4.png", dpi)
    log.info("%s: figures of %d variant(s)%s", dataset, len(metrics),
             f", segmentation of {', '.join(sorted(tests))}" if tests else "")


def make_figures(*, metrics_dir: Path, predictions_dir: Path, models_dir: Path, figures_dir: Path,
                 plots_dir: Path, summary_dir: Path, params: dict[str, Any]) -> None:
    """Write every figure, plot data file and summary (module docstring) for the datasets the params
    run; the three folders are replaced whole, and only when everything could be made."""
    dpi = int(params["make_figures"]["dpi"])
    with atomic_path(figures_dir) as figures, atomic_path(plots_dir) as plots, atomic_path(summary_dir) as summary:
        for path in (figures, plots, summary):
            path.mkdir()
        for dataset in params["datasets"]["run"]:
            _dataset_outputs(dataset, params, metrics_dir=Path(metrics_dir), predictions_dir=Path(predictions_dir),
                             models_dir=Path(models_dir), figures=figures, plots=plots, summary=summary, dpi=dpi)
