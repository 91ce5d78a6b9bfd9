"""Stage convert_annotations: annotation pickles -> validated Parquet tables + anomaly report.

Writes, for one dataset (FineDiving or MTL-AQA, each from its release layout), `<out>/dives.parquet`
(schema `aqa.data.schema.DIVES_SCHEMA`; the DAG's out is data/processed/annotations/<dataset>),
`lexicon.parquet` and `validation.json`. Rows are in split order: the train keys in release
order, then the test keys in release order (the order the reference evaluation reports in).
Anomalies are reported and never repaired: a row keeps the released values. A dive with an
impossible anomaly (`validation.IMPOSSIBLE`: ends before it starts, negative score, ...) stops
the stage with an error naming the file and the dive, or, with params'
`convert_annotations.invalid_dives: drop`, is left out and listed in validation.json.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from aqa.data import finediving as fd
from aqa.data import validation as v
from aqa.data.datasets import FINEDIVING, dataset_spec
from aqa.data.mtl_aqa import ANNOTATIONS as MTL_ANNOTATIONS
from aqa.data.mtl_aqa import read_mtl_aqa, split_files, video_name
from aqa.data.pickles import load_pickle
from aqa.data.schema import (
    DIVES_SCHEMA, LEXICON_SCHEMA, SchemaError, check_schema, table_from_rows, write_parquet_atomic,
)
from aqa.errors import AqaError
from aqa.io import write_json_atomic

log = logging.getLogger(__name__)


INVALID_DIVES = ("error", "drop")


class InvalidAnnotationError(AqaError):
    """A dive no real competition can have (the message names the file, the dive and the problem)."""


def key_str(video: str, idx: int) -> str:
    return f"{video}/{idx}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _split_order(train: list, test: list, annotated: dict) -> list:
    """Train keys then test keys, release order, each annotated key once."""
    return [k for k in dict.fromkeys([*train, *test]) if k in annotated]


# ---------------------------------------------------------------- FineDiving


def _cross_file_anomalies(folder: Path, ann: fd.FineDivingAnnotations) -> list[v.Anomaly]:
    """The fine-grained and AQA files must repeat the coarse file's values for every dive."""
    fine = load_pickle(folder / fd.FINE)
    aqa = load_pickle(folder / fd.AQA)
    found: list[v.Anomaly] = []
    for key, d in ann.dives.items():
        k = key_str(*key)
        f = fine[key]
        for name, released in (("action_type", f["action_type"]), ("dive_score", f["dive_score"]),
                               ("difficulty", f["difficulty"])):
            if released != getattr(d, name):
                found.append(v.Anomaly(k, "cross_file_mismatch",
                                       f"{fd.FINE} {name} {released!r} != {fd.COARSE} {getattr(d, name)!r}"))
        names = {int(i): str(n) for i, n in dict(f.get("sub-action_types", {})).items()}
        wrong = {i: n for i, n in names.items() if ann.sub_action_types.get(i) != n}
        if wrong:
            found.append(v.Anomaly(k, "cross_file_mismatch", f"{fd.FINE} sub-action names {wrong} differ "
                                   f"from {fd.SUB_ACTIONS}"))
        if key not in aqa:
            found.append(v.Anomaly(k, "cross_file_mismatch", f"no entry in {fd.AQA}"))
            continue
        a = aqa[key]
        expected = (d.action_type, d.dive_score, d.difficulty, d.steps_transit_frames, d.frame_labels)
        for i, (name, want) in enumerate(zip(("action_type", "dive_score", "difficulty",
                                              "steps_transit_frames", "frames_labels"), expected)):
            got = a[i] if len(a) > i else None
            same = np.array_equal(np.asarray(got), want) if i >= 3 else got == want
            if not same:
                found.append(v.Anomaly(k, "cross_file_mismatch", f"{fd.AQA} item {i} ({name}) differs"))
    return found


def finediving_tables(folder: Path, num_frames: int = 96, invalid_dives: str = "error",
                      ) -> tuple[list[dict], list[dict], dict]:
    """Rows of dives.parquet and lexicon.parquet, and the validation report, for one folder.

    `invalid_dives`: "error" refuses a dive with an impossible anomaly, "drop" leaves it out.
    """
    ann = fd.read_finediving(folder)
    train = [key_str(*k) for k in ann.train_keys]
    test = [key_str(*k) for k in ann.test_keys]
    by_str = {key_str(*k): d for k, d in ann.dives.items()}

    anomalies = v.check_splits(train, test, by_str)
    anomalies += _cross_file_anomalies(folder, ann)
    rule_fits: dict[str, tuple[int, list[str]]] = {}
    rows: list[dict] = []
    for k in _split_order(train, test, by_str):
        d = by_str[k]
        fits, found = v.check_scores(k, d.difficulty, d.judge_scores, d.dive_score)
        rule_fits[k] = (len(d.judge_scores), fits)
        found += v.check_frame_range(k, d.start_frame, d.end_frame)
        transitions, step_found = v.check_steps(k, d.frame_labels, d.steps_transit_frames, d.start_frame,
                                                d.end_frame, ann.sub_action_types, num_frames)
        anomalies += found + step_found
        rows.append({
            "key": k, "video": d.video, "idx": d.idx, "split": d.split, "action_type": d.action_type,
            "difficulty": d.difficulty, "dive_score": d.dive_score, "judge_scores": list(d.judge_scores),
            "num_judges": len(d.judge_scores), "start_frame": d.start_frame, "end_frame": d.end_frame,
            "num_frames": d.num_frames, "frame_labels": d.frame_labels.tolist(),
            "steps_transit_frames": d.steps_transit_frames.tolist(),
            "transitions_96": list(transitions) if transitions is not None else None,
        })

    def file_of(kind: str) -> Path:
        return folder / (fd.FINE if kind == "frame_labels_length" else fd.COARSE)

    rows, dropped = screen_impossible(rows, anomalies, invalid_dives, file_of)
    anomalies += v.check_overlaps({r["key"]: (r["video"], r["start_frame"], r["end_frame"]) for r in rows})

    dives_using: Counter = Counter()
    frames_using: Counter = Counter()
    for r in rows:
        counts = Counter(r["frame_labels"])
        frames_using.update(counts)
        dives_using.update(counts.keys())
    lexicon = [{"id": i, "name": ann.sub_action_types[i], "used_dives": dives_using[i],
                "used_frames": frames_using[i]} for i in sorted(ann.sub_action_types)]
    rule_fits = {k: fits for k, fits in rule_fits.items() if k not in {d["key"] for d in dropped}}
    report = v.summarize("finediving", anomalies, rule_fits,
                         _extra(rows, num_frames, folder, fd.RELEASE_FILES, invalid_dives, dropped))
    report["num_sub_actions_used"] = sum(1 for x in lexicon if x["used_dives"])
    report["num_sub_actions_lexicon"] = len(lexicon)
    return rows, lexicon, report


def _extra(rows: list[dict], num_frames: int, folder: Path, files: tuple[str, ...], invalid_dives: str,
           dropped: list[dict]) -> dict[str, Any]:
    splits = Counter(r["split"] for r in rows)
    judges = Counter(r["num_judges"] for r in rows)
    return {
        "num_dives": len(rows),
        "invalid_dives": invalid_dives,
        "dropped_dives": dropped,
        "splits": {s: splits[s] for s in ("train", "test")},
        "num_action_types": len({r["action_type"] for r in rows}),
        "dives_per_judge_count": {str(n): c for n, c in sorted(judges.items())},
        "num_frames_scale": num_frames,
        "row_order": "train split keys in release order, then test split keys in release order",
        "source_files": {name: _sha256(folder / name) for name in files},
    }


def screen_impossible(rows: list[dict], anomalies: list[v.Anomaly], policy: str,
                      file_of: Callable[[str], Path]) -> tuple[list[dict], list[dict]]:
    """Refuse (policy "error") or leave out (policy "drop") the rows of dives with impossible anomalies.

    Returns the rows kept and, for "drop", the dropped dives as `{key, kinds, details}`.
    `file_of(kind)` is the annotation file an anomaly of that kind comes from.
    """
    if policy not in INVALID_DIVES:
        raise InvalidAnnotationError(f"convert_annotations.invalid_dives: {policy!r} is not one of "
                                     f"{', '.join(INVALID_DIVES)}")
    bad = v.impossible_dives(anomalies)
    if not bad:
        return rows, []
    if policy == "error":
        raise InvalidAnnotationError(_refusal(bad, file_of))
    dropped = [{"key": k, "kinds": [a.kind for a in found], "details": [a.detail for a in found]}
               for k, found in bad.items()]
    log.warning("left out %d impossible dive(s) (convert_annotations.invalid_dives: drop): %s", len(dropped),
                "; ".join(f"{d['key']} ({', '.join(d['kinds'])})" for d in dropped))
    return [r for r in rows if r["key"] not in bad], dropped


def _refusal(bad: dict[str, list[v.Anomaly]], file_of: Callable[[str], Path]) -> str:
    """One line: the first impossible dive in full, how many others and which."""
    key, found = next(iter(bad.items()))
    first = ", ".join(f"{a.detail} ({a.kind})" for a in found)
    message = f"{file_of(found[0].kind)}: dive {key}: {first}"
    others = list(bad)[1:]
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        message += f"; {len(others)} more impossible dive(s): {shown}"
    return message + "; fix the annotations, or set convert_annotations.invalid_dives: drop to leave them out"


# ---------------------------------------------------------------- MTL-AQA


def mtl_aqa_tables(info_dir: Path, split: int, num_frames: int = 96, invalid_dives: str = "error",
                   ) -> tuple[list[dict], dict]:
    """Rows of MTL-AQA's dives.parquet (no step annotation) and its validation report."""
    ann = read_mtl_aqa(info_dir, split)
    by_str = {key_str(video_name(k[0]), k[1]): d for k, d in ann.dives.items()}
    train = [key_str(video_name(k[0]), k[1]) for k in ann.train_keys]
    test = [key_str(video_name(k[0]), k[1]) for k in ann.test_keys]
    anomalies = v.check_splits(train, test, by_str)
    test_set = set(test)
    rule_fits: dict[str, tuple[int, list[str]]] = {}
    rows: list[dict] = []
    for k in _split_order(train, test, by_str):
        d = by_str[k]
        fits, found = v.check_scores(k, d.difficulty, d.judge_scores, d.final_score)
        rule_fits[k] = (len(d.judge_scores), fits)
        anomalies += found + v.check_frame_range(k, d.start_frame, d.end_frame)
        rows.append({
            "key": k, "video": video_name(d.video), "idx": d.idx,
            "split": "test" if k in test_set else "train",  # as FineDiving: a key in both counts as test
            "action_type": d.dive_number, "difficulty": d.difficulty, "dive_score": d.final_score,
            "judge_scores": list(d.judge_scores), "num_judges": len(d.judge_scores),
            "start_frame": d.start_frame, "end_frame": d.end_frame,
            "num_frames": d.end_frame - d.start_frame + 1,
            "frame_labels": None, "steps_transit_frames": None, "transitions_96": None,
        })
    rows, dropped = screen_impossible(rows, anomalies, invalid_dives, lambda kind: info_dir / MTL_ANNOTATIONS)
    rule_fits = {k: fits for k, fits in rule_fits.items() if k not in {d["key"] for d in dropped}}
    anomalies += v.check_overlaps({r["key"]: (r["video"], r["start_frame"], r["end_frame"]) for r in rows})
    files = (MTL_ANNOTATIONS, *split_files(split))
    report = v.summarize("mtl_aqa", anomalies, rule_fits,
                         _extra(rows, num_frames, info_dir, files, invalid_dives, dropped))
    report["split_index"] = split
    return rows, report


# ---------------------------------------------------------------- the stage


def _write_dataset(out: Path, rows: list[dict], lexicon: list[dict], report: dict) -> None:
    meta = {"aqa.dataset": report["dataset"], "aqa.num_frames_scale": str(report["num_frames_scale"])}
    dives = table_from_rows(rows, DIVES_SCHEMA, meta)
    lex = table_from_rows(lexicon, LEXICON_SCHEMA, {"aqa.dataset": report["dataset"]})
    write_parquet_atomic(dives, out / "dives.parquet")
    write_parquet_atomic(lex, out / "lexicon.parquet")
    write_json_atomic(out / "validation.json", report)
    log.info("%s: %d dives (%s), %d anomalies %s -> %s", report["dataset"], report["num_dives"],
             report["splits"], report["num_anomalies"], report["anomaly_counts"], out)


def convert_annotations(*, dataset: str, annotations_dir: Path, out_dir: Path, cfg: dict) -> None:
    """Convert one dataset's raw annotation folder to `out_dir/{dives.parquet, lexicon.parquet,
    validation.json}`.

    dataset: `finediving` (the six release pickles) or `mtl_aqa` (the dive dictionary and split
    `cfg['mtl_aqa_split']`). cfg: params.yaml's `convert_annotations` section: mtl_aqa_split (int),
    num_frames (protocol scale of transitions_96, 96 in the papers), invalid_dives ("error" or
    "drop": what to do with a dive that has an impossible anomaly). Everything is checked before
    anything is written.
    """
    dataset_spec(dataset)
    annotations_dir, out_dir = Path(annotations_dir), Path(out_dir)
    num_frames = int(cfg["num_frames"])
    invalid_dives = cfg.get("invalid_dives", "error")
    if dataset == FINEDIVING:
        rows, lexicon, report = finediving_tables(annotations_dir, num_frames, invalid_dives)
    else:
        rows, report = mtl_aqa_tables(annotations_dir, int(cfg["mtl_aqa_split"]), num_frames, invalid_dives)
        lexicon = []  # MTL-AQA has no sub-action annotation: an empty lexicon keeps the layout uniform
    _write_dataset(out_dir, rows, lexicon, report)


def read_dives(path: str | Path) -> pd.DataFrame:
    """Read a dives.parquet written by this stage; refuse anything that is not a dives table."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dives table not found")
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # not Parquet at all
        raise SchemaError(f"{path}: not a Parquet file: {exc}") from exc
    check_schema(schema, DIVES_SCHEMA, str(path))
    df = pq.read_table(path).to_pandas()
    if df["key"].duplicated().any():
        raise SchemaError(f"{path}: duplicate keys {df['key'][df['key'].duplicated()].tolist()[:5]}")
    return df


def dataset_of(path: str | Path) -> str:
    """The dataset a dives.parquet holds: its `aqa.dataset` metadata (convert_annotations writes it),
    else the name of its folder (the pipeline's data/processed/annotations/<dataset>/)."""
    path = Path(path)
    try:
        meta = pq.read_schema(path).metadata or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: dives table not found") from None
    except Exception as exc:  # not Parquet at all
        raise SchemaError(f"{path}: not a Parquet file: {exc}") from exc
    name = meta.get(b"aqa.dataset")
    return name.decode() if name is not None else path.resolve().parent.name
