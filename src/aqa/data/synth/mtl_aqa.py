"""MTL-AQA-shaped annotation sets for the stand-in renderer: the real dive dictionary, or a sampled
one with MTL-AQA's statistics, plus a step timeline MTL-AQA does not annotate.

MTL-AQA (Parmar & Morris, CVPR 2019; the dive-number info of yuxumin/CoRe) gives each dive its
video, index, frame range, dive number, DD, seven judges and score (DD x the middle three), and
no sub-action labels. The renderer needs a take-off / flight / entry timeline to draw a dive, so
one is **invented** here for every dive (`invented_timeline`): it is what the footage shows,
never an annotation of the output (the written dive dictionary has no step field, as the
release). The tables below were counted from the real file (1412 dives, 15 videos); they are
facts about the data set, embedded so that sampling needs no outside file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aqa.data.finediving import Dive, FineDivingAnnotations, Key
from aqa.data.mtl_aqa import MtlKey, read_mtl_records, read_split, video_name
from aqa.data.synth.dive_numbers import LEXICON, label_runs, parse_dive_number
from aqa.data.synth.sampler import (ENTRY_SHARE_QUANTILES, TAKEOFF_SHARE_QUANTILES, _inverse_cdf,
                                    _stratified_split, judges_from_quality, quality_from_score, rng_for,
                                    score_rule, split_mark)

NUM_JUDGES = 7
MIN_FRAMES = 4  # the renderer's step timing needs a frame before the flight and two after it

# dive number (as released, upper-case position) -> {DD: count} over the 1412 real dives.
MTL_ACTIONS: dict[str, dict[float, int]] = {
    '100B': {1.5: 1}, '102B': {1.9: 1}, '103B': {1.6: 20}, '105B': {2.3: 2, 2.4: 4, 3.4: 1},
    '107B': {2.7: 2, 3.0: 124, 3.1: 34}, '107C': {2.7: 5, 2.8: 6}, '109C': {3.7: 41, 3.8: 19},
    '200B': {1.8: 2}, '200D': {1.8: 5}, '201B': {2.9: 1}, '205B': {2.9: 39, 3.0: 46}, '205C': {2.8: 13},
    '207B': {3.6: 34}, '207C': {3.3: 89, 3.5: 6}, '300B': {1.9: 8}, '300D': {1.9: 11},
    '305B': {2.8: 1, 2.9: 6, 3.0: 21}, '305C': {2.7: 8, 2.8: 23}, '307C': {3.3: 63, 3.4: 14, 3.5: 32},
    '403B': {2.0: 21}, '405B': {2.8: 24, 3.0: 21}, '405C': {2.7: 12, 2.8: 2}, '407B': {3.5: 1},
    '407C': {3.2: 145, 3.4: 34}, '409C': {4.1: 6}, '5132D': {2.1: 6}, '5152B': {2.9: 9, 3.0: 17},
    '5154B': {3.3: 1, 3.4: 37}, '5156B': {3.8: 5, 3.9: 6}, '5231D': {2.0: 5}, '5233D': {2.4: 3},
    '5235D': {2.8: 6}, '5237D': {3.3: 2}, '5251B': {2.6: 6}, '5251D': {2.6: 1},
    '5253B': {2.6: 1, 3.2: 108, 3.3: 2}, '5255B': {3.6: 51}, '5255D': {3.6: 1}, '5331D': {2.1: 2},
    '5335D': {2.9: 2}, '5337D': {3.4: 3}, '5353B': {3.3: 21}, '5355B': {3.7: 3}, '612B': {1.9: 3},
    '612D': {1.9: 2}, '6142D': {3.1: 10}, '614B': {2.4: 2}, '614D': {2.4: 1}, '6241B': {2.7: 3},
    '6241C': {2.7: 1}, '6241D': {2.7: 2}, '6243D': {3.2: 65}, '6245D': {3.2: 2, 3.6: 22}, '626B': {3.5: 13},
    '626C': {3.2: 1, 3.3: 31}, '626D': {3.3: 1}, '627C': {3.3: 1}, '636C': {3.3: 1, 3.4: 5},
}
# Quantiles of the real execution mark m = score / DD / 3 (the mean of the three counted judges;
# mean 7.12, sd 1.40) at MARK_LEVELS %, finer in the tails, and of the clip lengths (0, 5, ..., 100 %;
# 55-274 frames, mean 107).
MARK_LEVELS = [0, 0.5, 1, 2, 3, 4, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95,
               96, 97, 98, 99, 100]
MARK_QUANTILES = [0.0, 2.5, 3.0, 3.501, 3.833, 4.0, 4.167, 5.167, 5.667, 6.167, 6.5, 6.667, 7.0, 7.0, 7.333,
                  7.5, 7.5, 7.667, 7.833, 8.0, 8.0, 8.167, 8.5, 8.5, 9.0, 9.0, 9.0, 9.167, 9.5, 9.667]
LENGTH_QUANTILES = [55, 79, 83, 85, 87, 89, 91, 94, 97, 99, 101, 105, 107, 111, 115, 120, 127, 133, 143,
                    153, 274]
# Real score statistics the sampled set is tested against (tests/unit/data/synth).
SCORE_MEAN, SCORE_SD = 67.00, 16.92

# The release's coding of the dive number's parts (checked on every real dive by a test).
POSITION_CODE = {"free": 0, "pike": 1, "tuck": 2, "straight": 3}  # no straight dive in the release: 3 assumed
ROTATION_CODE = {"back": 0, "forward": 1, "inward": 2, "reverse": 3}


def dive_fields(code: str) -> dict[str, int]:
    """The fields MTL-AQA derives from a dive number: position, armstand, rotation type, half
    somersaults (ss_no) and half twists (tw_no)."""
    dn = parse_dive_number(code)
    return {"position": POSITION_CODE[dn.position], "armstand": int(dn.armstand),
            "rotation_type": ROTATION_CODE[dn.direction], "ss_no": dn.half_somersaults, "tw_no": dn.half_twists}


def invented_timeline(code: str, num_frames: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame labels and transit frames for a dive of `num_frames` frames that has no step
    annotation: FineDiving's label sequence of the dive number, a flight of ~N(36, 5.4) frames
    (kept in 22-50) and take-off / entry shares drawn from FineDiving's quantiles (as
    `sampler.sample_timing`), fitted into the given length."""
    runs = label_runs(code.lower())
    n = int(num_frames)
    if n < MIN_FRAMES:
        raise ValueError(f"dive of {n} frames: too short to draw a take-off, a flight and an entry "
                         f"(at least {MIN_FRAMES})")
    flight = int(np.clip(np.clip(round(rng.normal(36.0, 5.4)), 22, 50), 1, n - 3))
    to_share = _inverse_cdf(TAKEOFF_SHARE_QUANTILES, rng.random())
    en_share = _inverse_cdf(ENTRY_SHARE_QUANTILES, rng.random())
    rest = n - flight
    takeoff = int(np.clip(round(rest * to_share / (to_share + en_share)), 1, rest - 1))
    entry = rest - takeoff
    middle = len(runs) - 2
    shares = {1: [1.0], 2: [0.5, 0.5], 3: [0.3, 0.4, 0.3]}[middle]
    cuts = np.round(np.cumsum(shares) * flight).astype(int)
    lengths = [takeoff] + list(np.diff(np.concatenate([[0], cuts]))) + [entry]
    keep = [i for i, length in enumerate(lengths) if length > 0]  # a short flight may leave no room for a twist
    labels = np.repeat(np.array([runs[i] for i in keep], dtype=np.int64), [lengths[i] for i in keep])
    transits = np.cumsum([lengths[i] for i in keep])[:-1] - 1
    return labels, transits.astype(np.int64)


@dataclass
class MtlSource:
    """What the renderer draws (dives with their invented timelines, latent step qualities) and
    what it writes back (the release records, re-timed at writing)."""

    annotations: FineDivingAnnotations          # keys (video name "01", idx); frame labels invented
    quality: dict[Key, np.ndarray]
    records: dict[Key, dict[str, Any]]          # every released field of each dive


def _as_dive(key: Key, split: str, rec: dict[str, Any], seed: int) -> Dive:
    start, end = int(rec["start_frame"]), int(rec["end_frame"])
    if end - start + 1 >= MIN_FRAMES:
        labels, transits = invented_timeline(str(rec["dive_number"]), end - start + 1,
                                             rng_for(seed, key[0], key[1], "timeline"))
    else:  # no timeline fits: synthesize_videos refuses the dive if it is to be rendered
        labels = transits = np.zeros(0, dtype=np.int64)
    return Dive(key[0], key[1], split, str(rec["dive_number"]), float(rec["difficulty"]),
                float(rec["final_score"]), [float(j) for j in rec["judge_scores"]], start, end, transits, labels)


def _source(records: dict[MtlKey, dict[str, Any]], train: list[MtlKey], test: list[MtlKey],
            quality: dict[Key, np.ndarray] | None, seed: int) -> MtlSource:
    def name(k: MtlKey) -> Key:
        return (video_name(k[0]), int(k[1]))

    test_set, listed = set(test), set(train) | set(test)
    dives = {name(k): _as_dive(name(k), "test" if k in test_set else "train", rec, seed)
             for k, rec in records.items() if k in listed}
    if quality is None:  # real judges: invert the score, as for real FineDiving annotations
        quality = {k: quality_from_score(d, seed) for k, d in dives.items()}
    ann = FineDivingAnnotations(dives, dict(LEXICON), [name(k) for k in train if name(k) in dives],
                                [name(k) for k in test if name(k) in dives])
    return MtlSource(ann, quality, {name(k): rec for k, rec in records.items() if name(k) in dives})


def read_mtl_source(info_dir, seed: int) -> MtlSource:
    """The real dive dictionary and split 0 (the only split of the public info folder); dives in
    neither split are left out, as convert_annotations would read them."""
    records = read_mtl_records(info_dir)
    train, test = read_split(info_dir, 0)
    return _source(records, train, test, None, seed)


def sample_mtl_aqa(cfg: dict, seed: int) -> MtlSource:
    """`num_videos` x `dives_per_video` dives with MTL-AQA's dive numbers, DDs, execution marks,
    clip lengths and seven judges (score = DD x the middle three); split by `test_fraction`,
    stratified by dive number. Videos are numbered 1..num_videos, dives 1..dives_per_video."""
    codes = sorted(MTL_ACTIONS)
    p = np.array([sum(MTL_ACTIONS[c].values()) for c in codes], dtype=float)
    records: dict[MtlKey, dict[str, Any]] = {}
    quality: dict[Key, np.ndarray] = {}
    dives: dict[Key, Dive] = {}
    for v in range(1, int(cfg["num_videos"]) + 1):
        for idx in range(1, int(cfg["dives_per_video"]) + 1):
            rng = rng_for(seed, "mtl_aqa", v, idx, "annotation")
            code = codes[rng.choice(len(codes), p=p / p.sum())]
            dds = sorted(MTL_ACTIONS[code])
            dd_p = np.array([MTL_ACTIONS[code][d] for d in dds], dtype=float)
            dd = float(dds[rng.choice(len(dds), p=dd_p / dd_p.sum())])
            q = split_mark(float(np.interp(rng.random() * 100.0, MARK_LEVELS, MARK_QUANTILES)) / 10.0, rng)
            judges = judges_from_quality(q, NUM_JUDGES, rng)
            length = int(round(_inverse_cdf(LENGTH_QUANTILES, rng.random())))
            records[(v, idx)] = {"primary_view": 0, "start_frame": 0, "end_frame": length - 1, **dive_fields(code),
                                 "difficulty": dd, "final_score": score_rule(judges, dd),
                                 "judge_scores": np.array(judges, dtype=np.float64), "dive_number": code}
            key = (video_name(v), idx)
            quality[key] = q
            dives[key] = Dive(key[0], idx, "train", code, dd, 0.0, judges, 0, 0, np.zeros(0), np.zeros(0))
    _split(dives, float(cfg["test_fraction"]), rng_for(seed, "mtl_aqa", "split"))
    train = [k for k in records if dives[(video_name(k[0]), k[1])].split == "train"]
    test = [k for k in records if dives[(video_name(k[0]), k[1])].split == "test"]
    return _source(records, train, test, quality, seed)


def _split(dives: dict[Key, Dive], test_fraction: float, rng: np.random.Generator) -> None:
    """As the FineDiving sampler: test dives per dive number in proportion, a number with one dive
    in train; then, if that leaves the test split short of round(test_fraction x n) (a small set
    of mostly single dives), other training dives at random."""
    _stratified_split(dives, test_fraction, rng)
    want = int(round(test_fraction * len(dives)))
    train = [k for k, d in dives.items() if d.split == "train"]
    short = want - (len(dives) - len(train))
    for i in (rng.permutation(len(train))[:short] if short > 0 and len(train) > 1 else []):
        dives[train[i]].split = "test"


def release_records(source: MtlSource, ann: FineDivingAnnotations) -> dict[MtlKey, dict[str, Any]]:
    """The dive dictionary to write: every released field, start / end frames from `ann` (the
    dives placed on the stand-in video's timeline), keys as the release's (int, int)."""
    out: dict[MtlKey, dict[str, Any]] = {}
    for key, d in ann.dives.items():
        rec = dict(source.records[key])
        rec["start_frame"], rec["end_frame"] = int(d.start_frame), int(d.end_frame)
        out[(int(key[0]), int(key[1]))] = rec
    return out
