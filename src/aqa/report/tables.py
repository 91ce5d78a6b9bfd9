"""The make_report stage: the FineDiving paper's Tables 2-4, ours beside the published numbers.

Reads every `<variant>.json` written by the evaluate stage (variant = `<method>-<dn|nodn>`) and
writes `finediving_table{2,3,4}.{md,csv,tex}`. Each of our cells is mean ± std over seeds, for
both protocols: "paper" (best value of each metric over epochs on test, as the reference code
reports) and "honest" (best-validation checkpoint evaluated once on test). A method or mode
without a metrics file is shown as "not run", beside its published numbers.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aqa.io import write_text_atomic
from aqa.report.published import FINEDIVING, FINEDIVING_EXEMPLARS, Published

log = logging.getLogger(__name__)

NOT_RUN = "not run"
NA = "–"  # not applicable / not reported
MODES = (("nodn", "w/o DN"), ("dn", "w/ DN"))
PROTOCOLS = (("paper", "ours, paper protocol"), ("honest", "ours, honest"))
TABLE2_ROWS = (("usdl", "USDL"), ("musdl", "MUSDL"), ("core", "CoRe"), ("tsa", "TSA"))
TABLE3_ROWS = (("fr", "F+R"), ("fr_asym", "F+R*"), ("fr_dn", "F+R#"), ("fsr", "F+S+R"), ("tsa", "TSA"),
               ("tsa_dagger", "TSA-dagger"))
# Rows measured with ground-truth transitions at test: the "gt_transitions" block of the base
# variant's metrics (the evaluate stage writes one for every method that predicts transitions).
GT_VARIANTS = {"tsa_dagger": "tsa"}
DIGITS = {"rho": 4, "rl2_x100": 4, "aiou50": 2, "aiou75": 2}
PERCENT = {"aiou50", "aiou75"}  # stored as fractions by evaluate, printed in %
TITLES = {
    "finediving_table2": "Table 2: comparison with the state of the art on FineDiving",
    "finediving_table3": "Table 3: ablation of TSA's components on FineDiving",
    "finediving_table4": "Table 4: TSA (w/ DN) with M exemplars for multi-exemplar voting",
}


@dataclass
class Table:
    name: str
    caption: str
    header: list[str]
    rows: list[list[str]]


# --------------------------------------------------------------------------- inputs


def load_metrics(metrics_dir: Path) -> dict[str, dict[str, Any]]:
    """Every metrics JSON of the folder by variant name; a file that is not valid JSON is refused."""
    out = {}
    for path in sorted(Path(metrics_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of metrics")
        out[data.get("variant", path.stem)] = data
    return out


def ours(metrics: dict[str, dict], method: str, mode: str) -> dict | None:
    """The metrics of `<method>-<mode>`; a ground-truth-transition variant (TSA-dagger) may also
    come from its base variant's "gt_transitions" block."""
    found = metrics.get(f"{method}-{mode}")
    if found is None and method in GT_VARIANTS:
        base = metrics.get(f"{GT_VARIANTS[method]}-{mode}")
        if base is not None and "gt_transitions" in base:
            found = {**base, **base["gt_transitions"]}
    return found


# --------------------------------------------------------------------------- cells


def _number(key: str, value: float | None) -> str:
    if value is None:
        return NA
    return f"{value:.{DIGITS[key]}f}"


def published_cell(pub: Published | None, key: str) -> str:
    return NA if pub is None else _number(key, getattr(pub, key))


def ours_cell(result: dict | None, protocol: str, key: str) -> str:
    """mean ± std of one metric; "not run" without a result, "–" when the method lacks the metric."""
    if result is None:
        return NOT_RUN
    summary = (result.get(protocol) or {}).get(key)
    if not summary or summary.get("mean") is None:
        return NA
    scale = 100.0 if key in PERCENT else 1.0
    mean, std = summary["mean"] * scale, (summary.get("std") or 0.0) * scale
    return f"{_number(key, mean)} ± {_number(key, std)}"


# --------------------------------------------------------------------------- tables


def _caption(title: str, used: list[dict], params: dict[str, Any], protocols: str) -> str:
    footage = sorted({m.get("footage") for m in used if m.get("footage")})
    if not footage:  # nothing run yet: describe what the params would produce
        footage = ["stand-in" if params["extract_frames"].get("frames_root") is None else "real"]
    seeds = sorted({s for m in used for s in m.get("seeds", [])}) or list(params["train"]["seeds"])
    footage_text = " + ".join(footage)
    if "stand-in" in footage:
        footage_text += " (rendered by synthesize_videos, not the real FineDiving videos)"
    return (f"{title}. Ours: {footage_text} footage; mean ± std over {len(seeds)} seed(s) "
            f"({', '.join(map(str, seeds))}); {protocols}. Published: Xu et al., CVPR 2022. "
            "R-l2 x 100; AIoU in %. not run: no metrics for that variant; –: not applicable "
            "or not reported.")


_BOTH = ("protocols: paper = best value of each metric over epochs on test, each metric independently "
         "(the reference code's reporting); honest = best-validation checkpoint evaluated once on test")


def _method_table(name: str, methods, keys: tuple[str, ...], metrics, params) -> Table:
    labels = {"rho": "rho", "rl2_x100": "R-l2", "aiou50": "AIoU@0.5", "aiou75": "AIoU@0.75"}
    header = ["Method", "Result"] + [f"{ml} {labels[k]}" for _, ml in MODES for k in keys]
    rows, used = [], []
    for method, label in methods:
        pub = FINEDIVING.get(method, {})
        rows.append([label, "published"] + [published_cell(pub.get(mode), k) for mode, _ in MODES for k in keys])
        results = {mode: ours(metrics, method, mode) for mode, _ in MODES}
        used += [r for r in results.values() if r is not None]
        for protocol, plabel in PROTOCOLS:
            # with ground-truth transitions at test, AIoU says nothing about the model
            rows.append([label, plabel] + [NA if method in GT_VARIANTS and k in PERCENT and results[mode]
                                           else ours_cell(results[mode], protocol, k)
                                           for mode, _ in MODES for k in keys])
    return Table(name, _caption(TITLES[name], used, params, _BOTH), header, rows)


def table2(metrics: dict[str, dict], params: dict[str, Any]) -> Table:
    return _method_table("finediving_table2", TABLE2_ROWS, ("rho", "rl2_x100"), metrics, params)


def table3(metrics: dict[str, dict], params: dict[str, Any]) -> Table:
    return _method_table("finediving_table3", TABLE3_ROWS, ("rho", "rl2_x100", "aiou50", "aiou75"),
                         metrics, params)


def table4(metrics: dict[str, dict], params: dict[str, Any]) -> Table:
    cfg = params["make_report"]
    result = metrics.get(f"{cfg['table4_variant']}-dn")
    keys = ("rho", "rl2_x100", "aiou50", "aiou75")
    header = ["M", "Result", "rho", "R-l2", "AIoU@0.5", "AIoU@0.75"]
    rows = []
    for m in cfg["exemplar_counts"]:
        rows.append([str(m), "published"] + [published_cell(FINEDIVING_EXEMPLARS.get(m), k) for k in keys])
        by_m = None if result is None else result.get("by_num_exemplars", {}).get(str(m))
        rows.append([str(m), "ours, honest"] + [ours_cell(by_m, "honest", k) if by_m is not None else NOT_RUN
                                                for k in keys])
    protocols = ("protocol: honest only (best-validation checkpoint evaluated once on test with the first "
                 "M of each dive's exemplars); the paper protocol (best over epochs) is measured at the "
                 "main M only")
    return Table("finediving_table4", _caption(TITLES["finediving_table4"], [result] if result else [],
                                               params, protocols), header, rows)


# --------------------------------------------------------------------------- writers


def to_markdown(table: Table) -> str:
    lines = [f"**{table.caption}**", "", "| " + " | ".join(table.header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(table.header) - 2)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.header)
    writer.writerows(table.rows)
    return buf.getvalue()


_TEX = {"&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "±": r"$\pm$", "–": "--", "rho": r"$\rho$",
        "R-l2": r"R-$\ell_2$"}


def _tex(text: str) -> str:
    for old, new in _TEX.items():
        text = text.replace(old, new)
    return text


def to_latex(table: Table) -> str:
    cols = "ll" + "r" * (len(table.header) - 2)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", f"\\caption{{{_tex(table.caption)}}}",
             f"\\label{{tab:{table.name}}}", f"\\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(_tex(h) for h in table.header) + r" \\", r"\midrule"]
    lines += [" & ".join(_tex(c) for c in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def make_report(*, metrics_dir: Path, tables_dir: Path, params: dict[str, Any]) -> None:
    """Write finediving_table{2,3,4}.{md,csv,tex} into tables_dir from the metrics JSONs."""
    metrics = load_metrics(Path(metrics_dir))
    log.info("make_report: %d metrics file(s): %s", len(metrics), ", ".join(sorted(metrics)) or "none")
    for table in (table2(metrics, params), table3(metrics, params), table4(metrics, params)):
        for ext, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
            write_text_atomic(Path(tables_dir) / f"{table.name}.{ext}", render(table))
        log.info("wrote %s", table.name)
