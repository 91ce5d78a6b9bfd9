"""Checks on annotation records: every anomaly is reported (key, kind, detail), none is repaired.

The checks are pure functions over plain values, so the FineDiving and MTL-AQA converters share
them and tests can feed them hand-made cases.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from aqa.data.protocol import ProtocolError, label_change_positions, sampled_frame_labels, transitions_from_sampled

# Published scores carry two decimals; a rule that fits is off by rounding only (<= 0.005 * 2).
SCORE_TOLERANCE = 0.05


def _middle_three(j: np.ndarray) -> float:
    s = np.sort(j)
    lo = (len(s) - 3) // 2  # drop the same number of highest and lowest
    return float(s[lo:lo + 3].sum())


# How a dive score follows from DD and judges (FINA rules as the datasets use them).
SCORE_RULES: dict[str, Callable[[float, np.ndarray], float]] = {
    "dd_x_middle3": lambda dd, j: dd * _middle_three(j),  # 7 individual judges
    "dd_x_sum": lambda dd, j: dd * float(j.sum()),  # 3 judges
    "dd_x_sum_x0.6": lambda dd, j: dd * float(j.sum()) * 0.6,  # 5 judges, synchronised
}
EXPECTED_RULE = {7: "dd_x_middle3", 3: "dd_x_sum", 5: "dd_x_sum_x0.6"}

# Anomalies no dive can really have: convert_annotations refuses a dive with one of them (or
# drops it when params' `convert_annotations.invalid_dives` is `drop`). Every other kind is
# reported only: the real FineDiving files have them (docs/ANNOTATIONS.md).
IMPOSSIBLE = ("frame_range_invalid", "frame_labels_length", "negative_score", "difficulty_not_positive",
              "unexpected_judge_count")


@dataclass(frozen=True)
class Anomaly:
    key: str
    kind: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def fitting_score_rules(difficulty: float, judges: Sequence[float], dive_score: float,
                        tol: float = SCORE_TOLERANCE) -> list[str]:
    """Names of the rules whose value is within `tol` of `dive_score`."""
    j = np.asarray(judges, dtype=float)
    if j.size < 3:
        return []
    return [name for name, rule in SCORE_RULES.items() if abs(rule(difficulty, j) - dive_score) <= tol]


def check_scores(key: str, difficulty: float, judges: Sequence[float], dive_score: float,
                 tol: float = SCORE_TOLERANCE) -> tuple[list[str], list[Anomaly]]:
    """Judge values, judge count and score formula of one dive: (fitting rules, anomalies)."""
    found: list[Anomaly] = []
    j = np.asarray(judges, dtype=float)
    out_of_range = [float(v) for v in j if not 0.0 <= v <= 10.0]
    if out_of_range:
        found.append(Anomaly(key, "judge_out_of_range", f"judge value(s) {out_of_range} outside 0..10 in {j.tolist()}"))
    off_step = [float(v) for v in j if 0.0 <= v <= 10.0 and v * 2 != round(v * 2)]
    if off_step:
        found.append(Anomaly(key, "judge_not_half_point", f"judge value(s) {off_step} not a multiple of 0.5"))
    if not difficulty > 0:  # NaN included
        found.append(Anomaly(key, "difficulty_not_positive", f"difficulty {difficulty}"))
    if not dive_score >= 0:
        found.append(Anomaly(key, "negative_score", f"dive_score {dive_score}"))
    fits = fitting_score_rules(difficulty, j, dive_score, tol)
    expected = EXPECTED_RULE.get(j.size)
    if expected is None:
        found.append(Anomaly(key, "unexpected_judge_count", f"{j.size} judges (expected 3, 5 or 7)"))
    elif expected not in fits:
        value = SCORE_RULES[expected](difficulty, j)
        found.append(Anomaly(
            key, "score_rule_mismatch",
            f"{j.size} judges: {expected} gives {value:.2f}, dive_score is {dive_score:.2f} "
            f"(DD {difficulty}, judges {j.tolist()}); fits {', '.join(fits) or 'no rule'}",
        ))
    return fits, found


def check_steps(key: str, frame_labels: np.ndarray, steps_transit_frames: np.ndarray, start_frame: int,
                end_frame: int, lexicon: Mapping[int, str], num_frames: int = 96,
                ) -> tuple[tuple[int, int] | None, list[Anomaly]]:
    """Frame labels, transit frames and protocol transitions of one dive.

    Returns the transitions on the `num_frames` scale (None when they cannot be computed) and the
    anomalies. The transitions are computed whatever else is wrong, as the reference would.
    """
    found: list[Anomaly] = []
    labels = np.asarray(frame_labels)
    transits = np.asarray(steps_transit_frames)
    length = end_frame - start_frame + 1
    if labels.size != length:
        found.append(Anomaly(key, "frame_labels_length",
                             f"{labels.size} labels for {length} frames ({start_frame}..{end_frame})"))
    unknown = sorted({int(v) for v in labels.tolist()} - set(lexicon))
    if unknown:
        found.append(Anomaly(key, "unknown_sub_action", f"label id(s) {unknown} not in the lexicon"))
    if labels.size:
        changes = label_change_positions(labels) - 1
        if not np.array_equal(changes, transits):
            found.append(Anomaly(key, "transit_label_mismatch",
                                 f"steps_transit_frames {transits.tolist()} but label changes - 1 are "
                                 f"{changes.tolist()}"))
    if transits.size and (np.any(np.diff(transits) <= 0) or transits.min() < 0 or transits.max() >= length - 1):
        found.append(Anomaly(key, "transit_frames_invalid",
                             f"steps_transit_frames {transits.tolist()} not increasing within 0..{length - 2}"))
    if not labels.size:
        found.append(Anomaly(key, "second_step_missing", "no frame labels at all"))
        return None, found
    sampled = sampled_frame_labels(labels, num_frames, start_frame=start_frame)
    try:
        t1, t2 = transitions_from_sampled(sampled)
    except ProtocolError as exc:
        found.append(Anomaly(key, "second_step_missing", str(exc)))
        return None, found
    half = num_frames // 2
    if t1 == t2:
        found.append(Anomaly(key, "flight_step_missing",
                             f"only two categories on the {num_frames}-frame scale: t1 = t2 = {t1}"))
    if not 0 <= t1 < half:
        found.append(Anomaly(key, "t1_outside_first_half", f"transitions ({t1}, {t2}): t1 not in [0, {half})"))
    if not half <= t2 < num_frames:
        found.append(Anomaly(key, "t2_outside_second_half",
                             f"transitions ({t1}, {t2}): t2 not in [{half}, {num_frames})"))
    return (t1, t2), found


def check_frame_range(key: str, start_frame: int, end_frame: int) -> list[Anomaly]:
    if start_frame < 0 or end_frame < start_frame:
        problem = "starts before frame 0" if start_frame < 0 else "ends before it starts"
        return [Anomaly(key, "frame_range_invalid", f"{problem}: start_frame {start_frame}, end_frame {end_frame}")]
    return []


def impossible_dives(anomalies: Iterable[Anomaly]) -> dict[str, list[Anomaly]]:
    """The dives with an impossible anomaly (IMPOSSIBLE), in order of first appearance, with those anomalies."""
    found: dict[str, list[Anomaly]] = {}
    for a in anomalies:
        if a.kind in IMPOSSIBLE:
            found.setdefault(a.key, []).append(a)
    return found


def check_splits(train_keys: Sequence[str], test_keys: Sequence[str], annotated: Iterable[str]) -> list[Anomaly]:
    """Duplicates, keys in both splits, split keys without annotation, annotated keys in no split."""
    found: list[Anomaly] = []
    annotated = set(annotated)
    for name, keys in (("train", train_keys), ("test", test_keys)):
        for key, n in sorted(Counter(keys).items()):
            if n > 1:
                found.append(Anomaly(key, "duplicate_split_key", f"listed {n} times in the {name} split"))
        for key in dict.fromkeys(k for k in keys if k not in annotated):
            found.append(Anomaly(key, "split_key_unannotated", f"in the {name} split but has no annotation"))
    for key in sorted(set(train_keys) & set(test_keys)):
        found.append(Anomaly(key, "key_in_both_splits", "listed in the train and the test split"))
    for key in sorted(annotated - set(train_keys) - set(test_keys)):
        found.append(Anomaly(key, "key_in_no_split", "annotated but in neither split"))
    return found


def check_overlaps(ranges: Mapping[str, tuple[str, int, int]]) -> list[Anomaly]:
    """Dives of the same video whose frame ranges overlap. `ranges`: key -> (video, start, end)."""
    found: list[Anomaly] = []
    by_video: dict[str, list[tuple[int, int, str]]] = {}
    for key, (video, start, end) in ranges.items():
        by_video.setdefault(video, []).append((start, end, key))
    for video in sorted(by_video):
        spans = sorted(by_video[video])
        for (s0, e0, k0), (s1, e1, k1) in zip(spans, spans[1:]):
            if s1 <= e0:
                found.append(Anomaly(k1, "overlapping_dives", f"frames {s1}..{e1} overlap {k0} ({s0}..{e0})"))
    return found


def summarize(dataset: str, anomalies: Sequence[Anomaly], rule_fits: Mapping[str, tuple[int, list[str]]],
              extra: Mapping[str, object]) -> dict:
    """The validation report: counts first, then every anomaly and each dive's fitting score rules.

    `rule_fits`: key -> (number of judges, fitting rule names).
    """
    per_judges: dict[str, Counter] = {}
    for n, fits in rule_fits.values():
        c = per_judges.setdefault(str(n), Counter())
        c["dives"] += 1
        c.update(fits or ["none"])
        if EXPECTED_RULE.get(n) in fits:
            c["expected_rule_fits"] += 1
    return {
        "dataset": dataset,
        **extra,
        "score_tolerance": SCORE_TOLERANCE,
        "expected_score_rule": {str(n): r for n, r in sorted(EXPECTED_RULE.items())},
        "score_rules_per_judge_count": {n: dict(sorted(c.items())) for n, c in sorted(per_judges.items())},
        "anomaly_counts": dict(sorted(Counter(a.kind for a in anomalies).items())),
        "num_anomalies": len(anomalies),
        "anomalies": [a.to_dict() for a in anomalies],
        "score_rules_by_dive": {k: fits for k, (_, fits) in rule_fits.items()},
    }
