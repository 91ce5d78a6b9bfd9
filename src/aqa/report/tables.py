"""The make_report stage: the FineDiving paper's Tables 2-4, ours beside the published numbers.

Reads the `finediving/<variant>-<mode>.json` written by the evaluate stage for every variant x
exemplar mode the current params train on FineDiving (other files in the folder are ignored) and
writes `finediving_table{2,3,4}.{md,csv,tex}`; the MTL-AQA table comes from aqa.report.mtl_aqa.
Each of our cells is mean ± std over seeds, for both protocols: "paper" (best value of each
metric over epochs on test, as the reference code reports) and "honest" (best-validation
checkpoint evaluated once on test; the last epoch's model when params carve no validation
split). A method or mode the params do not train is shown as "not run", beside its published
numbers.

Every metrics file must follow from the current params: its recorded params digest is
recomputed (aqa.provenance.evaluate_params) and a file made from other params, a missing file,
or files made from different annotations or features are refused (ReportError, one line).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aqa.data.datasets import FINEDIVING as FINEDIVING_DATA
from aqa.data.datasets import MTL_AQA, dvc_stage
from aqa.trained import DN, NODN, is_dn_only, same_model_in_both_modes, trained_pairs
from aqa.errors import AqaError
from aqa.io import write_text_atomic
from aqa.provenance import changed_inputs, evaluate_params, flatten, sha256_json
from aqa.report.published import FINEDIVING, FINEDIVING_EXEMPLARS, Published

log = logging.getLogger(__name__)

NOT_RUN = "not run"
SAME_MODEL = "(same model)"   # after a cell whose numbers are the other mode's model (with_same_model_modes)
SAME_MODEL_OF = "same_model_as"   # the key marking such a result: the variant it repeats
NA = "–"  # not applicable / not reported
MODES = (("nodn", "w/o DN"), ("dn", "w/ DN"))
PROTOCOLS = (("paper", "ours, paper protocol"), ("honest", "ours, honest"))
# I3D+MLP is not in the paper's Table 2: an extra row, labelled so, without published numbers.
TABLE2_ROWS = (("usdl", "USDL"), ("musdl", "MUSDL"), ("core", "CoRe"), ("tsa", "TSA"),
               ("i3d_mlp", "I3D+MLP (extra row)"))
TABLE2_NOTES = (
    "The paper defines w/o DN and w/ DN by the exemplars only; for the baselines (docs/METHODS.md, "
    "BASELINES.md D2): USDL and I3D+MLP w/o DN regress the raw score, w/ DN the execution part "
    "score / DD times the dive's DD; MUSDL always assembles its predicted judge scores times the DD, "
    "so its two columns are the same model{musdl}; CoRe w/o DN compares raw scores with any "
    "exemplar, w/ DN score / DD with exemplars of the same dive number. "
    "I3D+MLP is not in Xu et al. 2022 (FineParser's Table 1 lists it on FineDiving-HM, another "
    "setting): no published number beside it.")
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


class ReportError(AqaError):
    """Metrics that do not follow from the current params, or a table the params cannot build."""


@dataclass
class Table:
    name: str
    caption: str
    header: list[str]
    rows: list[list[str]]


# --------------------------------------------------------------------------- inputs


def trained_variants(params: dict[str, Any], dataset: str = FINEDIVING_DATA) -> list[tuple[str, str]]:
    """(variant, mode) of every `<variant>-<mode>` the params train (and evaluate) on `dataset`."""
    return trained_pairs(params, dataset)


def evaluate_stage(params: dict[str, Any], dataset: str, base: str, mode: str) -> str:
    """The DVC stage that writes the metrics of `<base>-<mode>` (a dn-only variant's group is evaluate_dn)."""
    return f"{dvc_stage('evaluate', dataset, is_dn_only(params, dataset, base))}@{base}-{mode}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ReportError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object of metrics")
    return data


def _show(value: Any) -> str:
    return "absent" if value is _ABSENT else json.dumps(value)


_ABSENT = object()


def check_made_from_params(path: Path, data: dict[str, Any], params: dict[str, Any], base: str, mode: str,
                           dataset: str = FINEDIVING_DATA) -> None:
    """Refuse a metrics file whose recorded params digest is not the current params' (naming what differs)."""
    rerun = f"re-run its evaluation (dvc repro {evaluate_stage(params, dataset, base, mode)})"
    prov = data.get("provenance")
    if not isinstance(prov, dict) or "params_sha256" not in prov:
        raise ReportError(f"{path}: records no provenance (written by an older evaluate); {rerun}")
    expected = evaluate_params(params, base, mode, dataset)
    if prov["params_sha256"] == sha256_json(expected):
        return
    recorded = {k: v for k, v in prov.get("params", [])}
    now = flatten(expected)
    differ = [k for k in sorted(set(recorded) | set(now)) if recorded.get(k, _ABSENT) != now.get(k, _ABSENT)]
    detail = "; ".join(f"{k}: {_show(recorded.get(k, _ABSENT))} there, {_show(now.get(k, _ABSENT))} now"
                       for k in differ[:4]) or "their digest differs"
    more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
    raise ReportError(f"{path}: made from other params than the current ones ({detail}{more}); {rerun}")


def _check_same_inputs(found: dict[Path, dict[str, Any]]) -> None:
    """Every metrics file of one report was made from the same annotations and features."""
    if not found:
        return
    reference_path, reference = next(iter(found.items()))
    ref_inputs = {k: v for k, v in reference["provenance"].get("inputs", {}).items() if k != "code"}
    for path, data in found.items():
        differ = changed_inputs(data["provenance"].get("inputs"), ref_inputs)
        if differ:
            raise ReportError(f"{path}: made from other {' and '.join(differ)} than {reference_path}; "
                              "re-run the stale evaluations (dvc repro)")


def load_metrics(metrics_dir: Path, params: dict[str, Any],
                 dataset: str = FINEDIVING_DATA) -> dict[str, dict[str, Any]]:
    """The metrics of every variant x mode the params train on `dataset`, by `<variant>-<mode>`, each
    checked to follow from the current params; files of variants the params do not name are ignored.
    `metrics_dir`: the dataset's folder (reports/metrics/<dataset>)."""
    metrics_dir = Path(metrics_dir)
    found: dict[Path, dict[str, Any]] = {}
    for base, mode in trained_variants(params, dataset):
        path = metrics_dir / f"{base}-{mode}.json"
        if not path.is_file():
            raise ReportError(f"{path}: no metrics for {base}-{mode}, which params train on {dataset} "
                              f"(datasets.variants.{dataset} x train.exemplar_modes, datasets.dn_only.{dataset} "
                              f"w/ DN); run its evaluation (dvc repro {evaluate_stage(params, dataset, base, mode)})")
        data = _read_json(path)
        check_made_from_params(path, data, params, base, mode, dataset)
        found[path] = data
    _check_same_inputs(found)
    ignored = sorted(p.name for p in metrics_dir.glob("*.json") if p not in found)
    if ignored:
        log.info("ignored (variants the params do not train): %s", ", ".join(ignored))
    return {path.stem: data for path, data in found.items()}


def ours(metrics: dict[str, dict], method: str, mode: str) -> dict | None:
    """The metrics of `<method>-<mode>`; a ground-truth-transition variant (TSA-dagger) may also
    come from its base variant's "gt_transitions" block."""
    found = metrics.get(f"{method}-{mode}")
    if found is None and method in GT_VARIANTS:
        base = metrics.get(f"{GT_VARIANTS[method]}-{mode}")
        if base is not None and "gt_transitions" in base:
            found = {**base, **base["gt_transitions"]}
    return found


def with_same_model_modes(metrics: dict[str, dict], params: dict[str, Any], dataset: str) -> dict[str, dict]:
    """`metrics` plus a w/o DN result for every dn-only variant whose modes are the same model
    (aqa.trained.SAME_MODEL_METHODS: MUSDL, trained once): its w/ DN model's, marked SAME_MODEL_OF,
    so that its cells say SAME_MODEL. Only when params train mode nodn at all."""
    out = dict(metrics)
    if NODN not in params["train"]["exemplar_modes"]:
        return out
    for base in same_model_in_both_modes(params, dataset):
        if f"{base}-{DN}" in metrics:
            out[f"{base}-{NODN}"] = {**metrics[f"{base}-{DN}"], SAME_MODEL_OF: f"{base}-{DN}"}
    return out


def same_model_note(params: dict[str, Any], dataset: str, other: str = "w/o DN") -> str:
    """The caption's sentence for SAME_MODEL cells ("" when the params have none)."""
    if NODN not in params["train"]["exemplar_modes"] or not same_model_in_both_modes(params, dataset):
        return ""
    return (f"{SAME_MODEL}: a method whose exemplar mode changes nothing (MUSDL, docs/METHODS.md D2) is "
            f"trained once, w/ DN (params datasets.dn_only.{dataset}); its {other} cells repeat that model's "
            "numbers.")


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
    return f"{_number(key, mean)} ± {_number(key, std)}" + (f" {SAME_MODEL}" if result.get(SAME_MODEL_OF) else "")


# --------------------------------------------------------------------------- tables


def _caption(title: str, used: list[dict], params: dict[str, Any], protocols: str) -> str:
    footage = sorted({m.get("footage") for m in used if m.get("footage")})
    if not footage:  # nothing run yet: describe what the params would produce
        footage = ["stand-in" if params["extract_frames"]["frames_root"].get(FINEDIVING_DATA) is None else "real"]
    footage_text = " + ".join(footage)
    if "stand-in" in footage:
        footage_text += " (rendered by synthesize_videos, not the real FineDiving videos)"
    return (f"{title}. Ours: {footage_text} footage; {seeds_text(used, params)}; {protocols}. "
            "Published: Xu et al., CVPR 2022. "
            "R-l2 x 100; AIoU in %. not run: params.yaml does not train that variant or mode; –: not "
            "applicable or not reported.")


def seeds_text(used: list[dict], params: dict[str, Any]) -> str:
    """The seeds the numbers average over: one list when every metrics file used has the same
    seeds, else each variant's (a variant may have its own, train.variants.<v>.train.seeds);
    nothing used yet: the seeds params.train gives."""
    lists = {}
    for m in used:
        lists.setdefault(str(m.get("variant", "?")).rsplit("-", 1)[0], list(m.get("seeds", [])))
    distinct = {tuple(s) for s in lists.values()}
    if len(distinct) > 1:
        each = "; ".join(f"{base}: {', '.join(map(str, seeds))}" for base, seeds in sorted(lists.items()))
        return f"mean ± std over each variant's seeds ({each})"
    seeds = list(distinct.pop()) if distinct else list(params["train"]["seeds"])
    return f"mean ± std over {len(seeds)} seed(s) ({', '.join(map(str, seeds))})"


def honest_text(params: dict[str, Any]) -> str:
    """What the honest protocol's model is: with no validation split (paper mode: every training
    dive in the pool) it is the last epoch's, selected on nothing."""
    if params["train"]["validation_fraction"] > 0:
        return "best-validation checkpoint"
    return "last epoch's model (no validation split: train.validation_fraction 0, every training dive trains)"


def both_protocols(params: dict[str, Any]) -> str:
    return ("protocols: paper = best value of each metric over epochs on test, each metric independently "
            f"(the reference code's reporting); honest = {honest_text(params)} evaluated once on test")


def backbone_note(params: dict[str, Any]) -> str:
    if params["train"].get("backbone", "cached") == "finetune":
        return "The baselines fine-tune I3D with their heads, as their sources do."
    return "The baselines train on the frozen cached I3D features; their sources fine-tune I3D."


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
    return Table(name, _caption(TITLES[name], used, params, both_protocols(params)), header, rows)


def table2(metrics: dict[str, dict], params: dict[str, Any]) -> Table:
    table = _method_table("finediving_table2", TABLE2_ROWS, ("rho", "rl2_x100"), metrics, params)
    once = "musdl" in same_model_in_both_modes(params, FINEDIVING_DATA)
    notes = TABLE2_NOTES.format(musdl=", trained once" if once else " trained twice")
    table.caption += " " + " ".join(filter(None, (notes, same_model_note(params, FINEDIVING_DATA),
                                                  backbone_note(params))))
    return table


def table3(metrics: dict[str, dict], params: dict[str, Any]) -> Table:
    return _method_table("finediving_table3", TABLE3_ROWS, ("rho", "rl2_x100", "aiou50", "aiou75"),
                         metrics, params)


def check_table4_variant(params: dict[str, Any]) -> str:
    """`<make_report.table4_variant>-dn`, which the params must train."""
    name = params["make_report"]["table4_variant"]
    variants = params["train"]["variants"]
    if name not in variants:
        raise ReportError(f"params make_report.table4_variant: {name!r} is not a trained variant "
                          f"(train.variants: {', '.join(variants)})")
    if "dn" not in params["train"]["exemplar_modes"]:
        raise ReportError(f"params make_report.table4_variant: Table 4 is {name} w/ DN, but "
                          "train.exemplar_modes does not include dn")
    return f"{name}-dn"


def table4(metrics: dict[str, dict], params: dict[str, Any]) -> Table:
    cfg = params["make_report"]
    name = check_table4_variant(params)
    result = metrics.get(name)
    if result is not None and result.get("scoring") == "direct":
        raise ReportError(f"params make_report.table4_variant: Table 4 varies the number of voting exemplars, "
                          f"and {name} ({result.get('method')}) predicts each dive directly; name a pairwise variant")
    keys = ("rho", "rl2_x100", "aiou50", "aiou75")
    header = ["M", "Result", "rho", "R-l2", "AIoU@0.5", "AIoU@0.75"]
    rows = []
    for m in cfg["exemplar_counts"]:
        rows.append([str(m), "published"] + [published_cell(FINEDIVING_EXEMPLARS.get(m), k) for k in keys])
        by_m = None if result is None else result.get("by_num_exemplars", {}).get(str(m))
        rows.append([str(m), "ours, honest"] + [ours_cell(by_m, "honest", k) if by_m is not None else NOT_RUN
                                                for k in keys])
    protocols = (f"protocol: honest only ({honest_text(params)} evaluated once on test with the first "
                 "M of each dive's exemplars); the paper protocol (best over epochs) is measured at the "
                 "main M only")
    return Table("finediving_table4", _caption(table4_title(params), [result] if result else [],
                                               params, protocols), header, rows)


def table4_title(params: dict[str, Any]) -> str:
    """Table 4's title names the variant that make_report.table4_variant votes with; its published
    rows are always TSA's (the paper's Table 4)."""
    variant = params["make_report"]["table4_variant"]
    method = params["train"]["variants"][variant]["method"]
    labels = dict(TABLE2_ROWS + TABLE3_ROWS)
    title = TITLES["finediving_table4"]
    if method == "tsa":
        return title
    label = labels.get(method, method)
    return title.replace("TSA (w/ DN)", f"{label} (variant {variant}, w/ DN); published rows: TSA's,")


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


# braces first: the replacements after them write braces of their own
_TEX = {"{": r"\{", "}": r"\}", "^": r"\^{}",
        "&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "±": r"$\pm$", "–": "--", "rho": r"$\rho$",
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
    """Write finediving_table{2,3,4}.{md,csv,tex}, mtl_aqa.{md,csv,tex} and FineParser's
    fineparser_table{1,2,3,4,5}.{md,csv,tex} (aqa.report.fineparser_tables) into tables_dir from the
    metrics JSONs (`metrics_dir/<dataset>/<variant>-<mode>.json`) of the variants the params train;
    nothing is written unless every table can be built."""
    from aqa.report.fineparser_tables import fineparser_tables
    from aqa.report.mtl_aqa import mtl_aqa_table

    check_table4_variant(params)
    metrics = load_metrics(Path(metrics_dir) / FINEDIVING_DATA, params)
    log.info("make_report: %d metrics file(s): %s", len(metrics), ", ".join(sorted(metrics)))
    metrics = with_same_model_modes(metrics, params, FINEDIVING_DATA)
    mtl_metrics = with_same_model_modes(load_metrics(Path(metrics_dir) / MTL_AQA, params, MTL_AQA), params, MTL_AQA)
    tables = [table2(metrics, params), table3(metrics, params), table4(metrics, params),
              mtl_aqa_table(mtl_metrics, params)] + fineparser_tables(metrics, mtl_metrics, params)
    for table in tables:
        for ext, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
            write_text_atomic(Path(tables_dir) / f"{table.name}.{ext}", render(table))
        log.info("wrote %s", table.name)
