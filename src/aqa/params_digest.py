"""Per-stage params files for Snakemake, so that it reruns a stage when DVC would.

DVC reruns a stage when one of the params keys dvc.yaml lists for it changes; Snakemake compares
file times. The Snakefile writes, for every stage instance (`train@fr-dn` of a dataset), the
values of exactly those keys to a small JSON file that the stage's rule takes as an input
(.aqa/params/...), rewriting it only when the values change: its time then says when the stage's
params last changed, and a change of any other key leaves it alone.

A file seen for the first time (a fresh clone, a new checkout, the first run after an upgrade)
has no history: if dvc.lock records the same values for the stage, the outputs DVC recorded were
made with them, so the file gets the oldest possible time (1970) and makes nothing stale;
otherwise (different values, or a stage DVC never ran) it gets the current time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aqa.io import atomic_path
from aqa.params import read_yaml
from aqa.provenance import canonical_json

ROOT = Path(".aqa/params")
_ABSENT = object()


def lookup(params: Mapping[str, Any], key: str) -> Any:
    """The value of a dotted key (`train.variants.fr`) as DVC reads it, or _ABSENT."""
    value: Any = params
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def stage_values(params: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """{key: value} of the keys a stage reads (keys missing from params are left out, as DVC does)."""
    return {k: v for k in keys if (v := lookup(params, k)) is not _ABSENT}


def has_key(params: Mapping[str, Any], key: str) -> bool:
    """Whether the dotted key is in params (its value may be null)."""
    return lookup(params, key) is not _ABSENT


def locked_values(lock: Mapping[str, Any] | None, stage: str, params_file: str = "params.yaml") -> dict | None:
    """The params values dvc.lock records for a DVC stage (None if it records none)."""
    entry = ((lock or {}).get("stages") or {}).get(stage) or {}
    return (entry.get("params") or {}).get(params_file)


def read_lock(path: str | Path = "dvc.lock") -> dict | None:
    path = Path(path)
    return read_yaml(path.read_text()) if path.is_file() else None


def write_if_changed(path: str | Path, values: Mapping[str, Any], locked) -> bool:
    """Write `values` to `path` unless it holds them already; True if written.

    A new file whose values are the ones dvc.lock records is dated 1970 (see above). `locked`: those
    values (None: none recorded), or a function returning them, called only for a new file (reading
    dvc.lock takes a while)."""
    path = Path(path)
    content = canonical_json(dict(values)) + b"\n"
    try:
        if path.read_bytes() == content:
            return False
        new = False
    except FileNotFoundError:
        new = True
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)
    if new and callable(locked):
        locked = locked()
    if new and locked is not None and canonical_json(dict(locked)) == canonical_json(dict(values)):
        os.utime(path, (0, 0))
    return True
