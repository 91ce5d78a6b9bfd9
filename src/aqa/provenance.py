"""Provenance: the content hashes a stage output was made from, recorded in the output and
compared before the output is reused.

One record per output, `{input name: sha256}`: `annotations` (the content of dives.parquet),
`features` (the feature cache's fingerprint), `code` (the source that decides the result) and
`params` (the canonical JSON of exactly the params the stage reads). Paths inside a record are
relative (to the package, or to the folder of the output), so the same inputs give the same
record on any machine and in any folder. Nothing here depends on torch: make_report uses it too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

# The source files (relative to the aqa package) whose content decides each stage's result.
TRAIN_CODE = ("models", "train", "evaluate/voting.py", "evaluate/direct.py", "evaluate/sap_masks.py",
              "evaluate/mask_metrics.py", "metrics.py")
EVALUATE_CODE = ("models", "train", "evaluate", "metrics.py")

# Keys of params.train that no training reads (the stage list and the CLI loader's worker count);
# seeds are read one at a time (each seed is its own output). tests/unit/train/test_provenance_dag
# keeps this in agreement with the params dvc.yaml lists for the train stage.
TRAIN_KEYS_NOT_READ = frozenset({"variants", "exemplar_modes", "num_workers"})


# --------------------------------------------------------------------------- digests


def canonical_json(obj: Any) -> bytes:
    """The one serialisation that is hashed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def annotations_digest(dives_parquet: str | Path) -> str:
    """sha256 of the dives table's content (schema and rows ordered by key), not of the file's bytes.

    The bytes are deterministic for one pyarrow version but name that version (Parquet's
    `created_by`), so a library upgrade alone would retrain every model.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(dives_parquet)
    rows = sorted(table.to_pylist(), key=lambda r: str(r.get("key")))
    fields = [[f.name, str(f.type)] for f in table.schema]
    return sha256_json({"schema": fields, "rows": rows})


def code_fingerprint(parts: Iterable[str] = TRAIN_CODE) -> str:
    """sha256 of the named source files and folders of the aqa package (their *.py, by relative path)."""
    root = Path(__file__).resolve().parent
    files: set[Path] = set()
    for part in parts:
        path = root / part
        files.update(path.glob("*.py") if path.is_dir() else [path])
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- comparing records


def changed_inputs(recorded: Mapping[str, Any] | None, current: Mapping[str, str]) -> list[str]:
    """Names of the inputs whose recorded digest differs from (or is missing beside) the current one."""
    recorded = recorded or {}
    return [name for name in sorted(current) if recorded.get(name) != current[name]]


def flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (lists and scalars are leaves)."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two nested mappings (present in only one counts)."""
    a, b = flatten(old), flatten(new)
    return [k for k in sorted(set(a) | set(b)) if a.get(k, _MISSING) != b.get(k, _MISSING)]


_MISSING = object()


# --------------------------------------------------------------------------- params a stage reads


def training_section(train_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """params.train as one seed's training reads it."""
    return {k: v for k, v in train_cfg.items() if k not in TRAIN_KEYS_NOT_READ | {"seeds"} and not _constant_lr(k, v)}


def _constant_lr(key: str, value: Any) -> bool:
    """train.lr_schedule {name: constant} trains as before the key existed, so the records leave it
    out: the default's checkpoints and metrics stay the bytes they were (docs/METHODS.md D5)."""
    return key == "lr_schedule" and isinstance(value, Mapping) and dict(value) == {"name": "constant"}


def footage(params: Mapping[str, Any], dataset: str) -> str:
    """What one dataset's metrics were measured on; evaluate reads extract_frames.frames_root.<dataset>
    only for this."""
    return "stand-in" if params["extract_frames"]["frames_root"].get(dataset) is None else "real"


def evaluate_params(params: Mapping[str, Any], base: str, mode: str, dataset: str) -> dict[str, Any]:
    """The params a metrics file of `<base>-<mode>` on `dataset` follows from: the variant's settings,
    the train params its models were trained with (every seed), evaluate, the exemplar counts, the
    dataset and its footage.

    Paths are left out (frames_root counts only as stand-in / real), so the record is the same in
    any folder. `train` holds the values the variant trains with (its own `train:` settings, e.g.
    seeds or epochs, in place of params.train's), so a change of a params.train value the variant
    overrides, which leaves its models as they are, does not make its metrics stale.
    """
    own = params["train"]["variants"][base].get("train") or {}
    train = {k: v for k, v in {**params["train"], **own}.items()
             if k not in TRAIN_KEYS_NOT_READ and not _constant_lr(k, v)}
    return {"variant": dict(params["train"]["variants"][base]), "exemplar_mode": mode, "train": train,
            "evaluate": dict(params["evaluate"]),
            "make_report": {"exemplar_counts": list(params["make_report"]["exemplar_counts"])},
            "dataset": dataset, "footage": footage(params, dataset)}


def metrics_provenance(params: Mapping[str, Any], base: str, mode: str, dataset: str, *,
                       inputs: Mapping[str, str], models: Mapping[str, str]) -> dict[str, Any]:
    """The `provenance` block of a metrics file.

    `params` and `models` are lists of [key, value] pairs rather than objects: `dvc metrics show`
    prints every scalar of an object as a column, and these are not metrics.
    """
    read = evaluate_params(params, base, mode, dataset)
    return {"params_sha256": sha256_json(read), "params": sorted([k, v] for k, v in flatten(read).items()),
            "inputs": dict(sorted(inputs.items())), "models": sorted([k, v] for k, v in models.items())}
