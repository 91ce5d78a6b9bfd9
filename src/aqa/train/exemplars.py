"""Exemplar choice: one random exemplar per training query, M fixed ones per evaluated dive.

Training draws come from a generator seeded by (seed, epoch), so an epoch's draws do not depend
on what ran before it (a resumed run draws the same). Evaluation exemplars depend only on
(exemplar_seed, the dive's key), unlike the reference code's fresh random draw on every run,
and the first M' of a dive's M exemplars are its exemplars for any M' < M (Table 4).
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np

log = logging.getLogger(__name__)

MODES = ("dn", "nodn")


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of everything random in one training epoch."""
    return np.random.default_rng([seed, epoch])


def stable_hash(key: str) -> int:
    """A 64-bit hash of a string that is the same in every process (unlike hash())."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"exemplar mode {mode!r}: expected one of {MODES}")


def _other_member(n: int, pos: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For members at positions `pos` of a group of n (n >= 2), a uniform other position."""
    r = rng.integers(0, n - 1, size=pos.size)
    return r + (r >= pos)


def sample_train_exemplars(actions: np.ndarray, mode: str, rng: np.random.Generator) -> np.ndarray:
    """For each dive of a training pool, the pool position of one random exemplar.

    dn: a dive of the same action type, itself excluded when others exist (a type with a single
    dive is its own exemplar: relative score 0, as in the reference loader). nodn: any other dive.
    """
    _check_mode(mode)
    actions = np.asarray(actions)
    n = actions.size
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if mode == "nodn":
        if n == 1:
            return np.zeros(1, dtype=np.int64)
        return _other_member(n, np.arange(n), rng).astype(np.int64)
    out = np.empty(n, dtype=np.int64)
    for action in np.unique(actions):       # sorted: a fixed order of draws
        members = np.flatnonzero(actions == action)
        if members.size == 1:
            out[members] = members
        else:
            out[members] = members[_other_member(members.size, np.arange(members.size), rng)]
    return out


def eval_exemplars(query_keys: list[str], query_actions: np.ndarray, pool_keys: list[str],
                   pool_actions: np.ndarray, mode: str, num_exemplars: int, seed: int) -> np.ndarray:
    """(N, M) pool positions of each query's exemplars, -1 where a query has fewer than M.

    dn: pool dives of the query's action type (fewer than M where fewer exist; a type absent
    from the pool falls back to any pool dive, logged). nodn: any pool dive. The query itself is
    never its own exemplar. The order of the pool does not matter: candidates are ranked by key.
    """
    _check_mode(mode)
    pool_keys_arr = np.asarray(pool_keys, dtype=object)
    pool_actions = np.asarray(pool_actions)
    order = np.argsort(pool_keys_arr.astype(str), kind="stable")
    by_action: dict = {}
    for pos in order:
        by_action.setdefault(pool_actions[pos], []).append(pos)
    everyone = list(order)
    out = np.full((len(query_keys), num_exemplars), -1, dtype=np.int64)
    fallback = 0
    for i, (key, action) in enumerate(zip(query_keys, np.asarray(query_actions))):
        candidates = everyone if mode == "nodn" else by_action.get(action)
        if candidates is None:
            candidates, fallback = everyone, fallback + 1
        candidates = np.array([c for c in candidates if pool_keys_arr[c] != key], dtype=np.int64)
        if candidates.size == 0:
            raise ValueError(f"dive {key}: no exemplar available in a pool of {len(pool_keys)} dives")
        rng = np.random.default_rng([seed, stable_hash(key)])
        chosen = rng.permutation(candidates)[:num_exemplars]
        out[i, : chosen.size] = chosen
    if fallback:
        log.warning("%d dives have an action type absent from the exemplar pool; "
                    "their exemplars are drawn from all types", fallback)
    return out
