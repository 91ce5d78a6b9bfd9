"""Annotation sets with the real statistics, and the latent execution quality behind scores.

Every dive gets three latent step qualities q = (take-off, flight, entry) in [0, 1]. The judges
see a weighted sum of them (`STEP_WEIGHTS`, FineParser's lambda) through rounding and noise;
the renderer shows each q only in the motion of its own step. With real annotations the
direction is inverted: the real judges' mean (score / DD / 3 under every scoring rule) fixes
the weighted sum and seed-determined random offsets split it across the steps.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from aqa.data.finediving import Dive, FineDivingAnnotations, Key
from aqa.data.synth.dive_numbers import LEXICON, action_frequencies, difficulty_choices, label_runs

STEP_WEIGHTS = np.array([0.3, 0.5, 0.2])  # take-off, flight, entry
JUDGE_NOISE = 0.35  # sd of one judge around the true execution mark (real within-dive sd ~0.28)

# Quantiles (0, 5, ..., 100 %) of the real clip lengths and of the take-off and entry shares of
# a clip, from the 3000 real dives; sampled by inverse CDF. Shares use the 5-95 % range only.
LENGTH_QUANTILES = [63, 84, 90, 94, 97, 100, 101, 101, 101, 101, 101, 101, 103, 104, 106, 107,
                    110, 112, 118, 132, 273]
TAKEOFF_SHARE_QUANTILES = [0.102, 0.15, 0.181, 0.202, 0.218, 0.231, 0.248, 0.262, 0.277, 0.294,
                           0.308, 0.327, 0.342, 0.355, 0.366, 0.386, 0.41, 0.436, 0.476]
ENTRY_SHARE_QUANTILES = [0.202, 0.238, 0.261, 0.28, 0.297, 0.311, 0.327, 0.337, 0.348, 0.361,
                         0.372, 0.382, 0.395, 0.406, 0.417, 0.429, 0.446, 0.466, 0.495]


@dataclass(frozen=True)
class Event:
    """A competition event: board, synchronised or not, and the judging panel of the release."""

    board: str  # "3m" | "10m"
    synchronised: bool
    num_judges: int  # 3 (individual, named competitions), 7 (MTL-AQA videos), 5 (synchronised)


# One of each panel and board first, so that six videos already cover every scoring rule.
EVENT_CYCLE = (Event("10m", False, 3), Event("3m", False, 3), Event("10m", True, 5),
               Event("3m", True, 5), Event("10m", False, 7), Event("3m", False, 7))


def event_of_video(name: str, action_types: list[str] | None = None) -> Event:
    """The event of a real or synthetic video name (e.g. '..._Men10mSynchronised_final_r1').

    MTL-AQA videos are numbered ('01'..'26'); their board is the one on which their dive
    numbers are more frequent in the named competitions.
    """
    sync = "ynchron" in name
    if "10m" in name or "3m" in name:
        board = "10m" if "10m" in name else "3m"
        return Event(board, sync, 5 if sync else (7 if "Olympic" in name else 3))
    votes = 0.0
    for code in action_types or []:
        code = code.lower()  # MTL-AQA writes the position letter in upper case
        votes += action_frequencies("10m").get(code, 0.0) - action_frequencies("3m").get(code, 0.0)
    return Event("10m" if votes >= 0 else "3m", False, 7)


def rng_for(seed: int, *parts: object) -> np.random.Generator:
    """An RNG fixed by the seed and the given parts (video name, idx, purpose)."""
    words = [int(seed)] + [zlib.crc32(str(p).encode()) for p in parts]
    return np.random.default_rng(words)


def score_rule(judges: list[float], difficulty: float) -> float:
    """The release's scoring rules: 7 judges DD x middle three; 3 DD x sum; 5 DD x sum x 0.6."""
    j = sorted(judges)
    if len(j) == 7:
        raw = sum(j[2:5])
    elif len(j) == 3:
        raw = sum(j)
    elif len(j) == 5:
        raw = sum(j) * 0.6
    else:
        raise ValueError(f"no scoring rule for {len(j)} judges")
    return round(difficulty * raw, 2)


def judges_from_quality(q: np.ndarray, num_judges: int, rng: np.random.Generator) -> list[float]:
    """Noisy views of 10 x the weighted step quality, rounded to 0.5 and kept in [0, 10]."""
    mark = 10.0 * float(STEP_WEIGHTS @ q)
    views = mark + rng.normal(0.0, JUDGE_NOISE, size=num_judges)
    return [float(v) for v in np.clip(np.round(views * 2) / 2, 0.0, 10.0)]


def sample_quality(rng: np.random.Generator) -> np.ndarray:
    """Step qualities with a shared skill term; mean mark ~7.2, sd ~1.2 like the real judges."""
    skill = rng.normal(0.0, 1.0)
    q = 0.73 + 0.11 * skill + rng.normal(0.0, 0.07, size=3)
    if rng.random() < 0.05:  # an occasional failed step, as in the real low tail
        q[rng.integers(3)] -= rng.uniform(0.2, 0.4)
    return np.clip(q, 0.0, 1.0)


def quality_from_score(dive: Dive, seed: int) -> np.ndarray:
    """Invert a real dive: mean judge = score / DD / 3; split it over the steps at random."""
    target = dive.dive_score / max(dive.difficulty, 1e-6) / 3.0 / 10.0
    return split_mark(target, rng_for(seed, dive.video, dive.idx, "quality"))


def split_mark(target: float, rng: np.random.Generator) -> np.ndarray:
    """Step qualities whose weighted sum is `target` (a mark / 10, clipped to [0, 1]): random
    offsets per step, projected back onto w.q = target inside [0, 1]."""
    target = float(np.clip(target, 0.0, 1.0))
    q = target + rng.normal(0.0, 0.08, size=3)
    for _ in range(20):
        q = np.clip(q + (target - STEP_WEIGHTS @ q) / (STEP_WEIGHTS @ STEP_WEIGHTS) * STEP_WEIGHTS, 0, 1)
    return q


def _inverse_cdf(quantiles: list[float], u: float) -> float:
    grid = np.linspace(0.0, 1.0, len(quantiles))
    return float(np.interp(u, grid, quantiles))


def sample_timing(code: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame labels and steps_transit_frames of one dive (real length and step shares)."""
    runs = label_runs(code)
    n = int(round(_inverse_cdf(LENGTH_QUANTILES, rng.random())))
    # real flight segments are tight (36 +- 5 frames); take-off and entry share the rest
    flight = int(np.clip(round(rng.normal(36.0, 5.4)), 22, max(22, n - 24)))
    to_share = _inverse_cdf(TAKEOFF_SHARE_QUANTILES, rng.random())
    en_share = _inverse_cdf(ENTRY_SHARE_QUANTILES, rng.random())
    rest = max(n - flight, 24)
    takeoff = max(4, int(round(rest * to_share / (to_share + en_share))))
    entry = max(12, rest - takeoff)
    n = takeoff + flight + entry
    middle = len(runs) - 2
    shares = {1: [1.0], 2: [0.5, 0.5], 3: [0.3, 0.4, 0.3]}[middle]
    cuts = np.round(np.cumsum(shares) * flight).astype(int)
    lengths = [takeoff] + list(np.diff(np.concatenate([[0], cuts]))) + [entry]
    labels = np.repeat(np.array(runs, dtype=np.int64), lengths)
    transits = np.cumsum(lengths)[:-1] - 1
    return labels, transits.astype(np.int64)


def video_name(event: Event, number: int, rng: np.random.Generator) -> str:
    """A name in the style of the release (marked StandIn so it never collides with a real one)."""
    competition = {3: "StandInDivingWorldCup2024", 5: "StandInDivingWorldCup2024",
                   7: "StandInOlympics2024"}[event.num_judges]
    sex = "Men" if rng.random() < 0.5 else "Women"
    sync = "Synchronised" if event.synchronised else ""
    return f"{competition}_{sex}{event.board}{sync}_final_r{number}"


@dataclass
class SampledSet:
    annotations: FineDivingAnnotations
    quality: dict[Key, np.ndarray]


def sample_annotations(cfg: dict) -> SampledSet:
    """A new annotation set: cfg num_videos x dives_per_video dives, split by test_fraction."""
    seed = int(cfg["seed"])
    dives: dict[Key, Dive] = {}
    quality: dict[Key, np.ndarray] = {}
    used_names: set[str] = set()
    for v in range(int(cfg["num_videos"])):
        event = EVENT_CYCLE[v % len(EVENT_CYCLE)]
        vrng = rng_for(seed, "video", v)
        name = video_name(event, v // len(EVENT_CYCLE) + 1, vrng)
        while name in used_names:
            name += "b"
        used_names.add(name)
        freq = action_frequencies(event.board)
        codes = sorted(freq)
        p = np.array([freq[c] for c in codes])
        for idx in range(int(cfg["dives_per_video"])):
            rng = rng_for(seed, name, idx, "annotation")
            code = codes[rng.choice(len(codes), p=p / p.sum())]
            dd_counts = difficulty_choices(code)
            dds = sorted(dd_counts)
            dd_p = np.array([dd_counts[d] for d in dds], dtype=float)
            dd = float(dds[rng.choice(len(dds), p=dd_p / dd_p.sum())])
            q = sample_quality(rng)
            judges = judges_from_quality(q, event.num_judges, rng)
            labels, transits = sample_timing(code, rng)
            dives[(name, idx)] = Dive(name, idx, "train", code, dd, score_rule(judges, dd), judges,
                                      0, len(labels) - 1, transits, labels)
            quality[(name, idx)] = q
    _stratified_split(dives, float(cfg["test_fraction"]), rng_for(seed, "split"))
    keys = list(dives)
    ann = FineDivingAnnotations(dives, dict(LEXICON),
                                [k for k in keys if dives[k].split == "train"],
                                [k for k in keys if dives[k].split == "test"])
    return SampledSet(ann, quality)


def _stratified_split(dives: dict[Key, Dive], test_fraction: float, rng: np.random.Generator) -> None:
    """Test dives per action type in proportion; a type with one dive stays in train."""
    groups: dict[str, list[Key]] = defaultdict(list)
    for key, d in dives.items():
        groups[d.action_type].append(key)
    want = int(round(test_fraction * len(dives)))
    exact = {c: test_fraction * len(ks) for c, ks in groups.items()}
    quota = {c: min(int(e), len(groups[c]) - 1) if len(groups[c]) > 1 else 0 for c, e in exact.items()}
    # largest remainders first, never leaving a type without a training dive
    for c in sorted(groups, key=lambda c: (-(exact[c] - int(exact[c])), c)):
        if sum(quota.values()) >= want:
            break
        if quota[c] < len(groups[c]) - 1:
            quota[c] += 1
    for c in sorted(groups):
        for i in rng.permutation(len(groups[c]))[: quota[c]]:
            dives[groups[c][i]].split = "test"


def stratified_subset(ann: FineDivingAnnotations, max_dives: int | None, seed: int) -> FineDivingAnnotations:
    """At most max_dives dives, in proportion per (action type, split); release order kept."""
    if max_dives is None or max_dives >= len(ann.dives):
        return ann
    groups: dict[tuple[str, str], list[Key]] = defaultdict(list)
    for key, d in ann.dives.items():
        groups[(d.action_type, d.split)].append(key)
    total = len(ann.dives)
    exact = {g: max_dives * len(ks) / total for g, ks in groups.items()}
    quota = {g: int(e) for g, e in exact.items()}
    for g in sorted(groups, key=lambda g: (-(exact[g] - quota[g]), g)):
        if sum(quota.values()) >= max_dives:
            break
        quota[g] += 1
    rng = rng_for(seed, "subset")
    keep: set[Key] = set()
    for g in sorted(groups):
        ks = sorted(groups[g])
        keep.update(ks[i] for i in rng.permutation(len(ks))[: quota[g]])
    dives = {k: d for k, d in ann.dives.items() if k in keep}
    return FineDivingAnnotations(dives, dict(ann.sub_action_types),
                                 [k for k in ann.train_keys if k in keep],
                                 [k for k in ann.test_keys if k in keep])
