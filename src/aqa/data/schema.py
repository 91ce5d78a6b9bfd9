"""The explicit pyarrow schemas of the processed annotation tables (docs/CONTRACTS.md).

One place defines the columns, their types and nullability; writers build tables against these
schemas and readers check files against them, so a drift is an error, not a silent cast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from aqa.io import atomic_path
from aqa.errors import AqaError

SCHEMA_VERSION = "1"

DIVES_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),  # "<video>/<idx>"
        pa.field("video", pa.string(), nullable=False),
        pa.field("idx", pa.int32(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # "train" | "test"
        pa.field("action_type", pa.string(), nullable=False),  # dive number as released
        pa.field("difficulty", pa.float64(), nullable=False),
        pa.field("dive_score", pa.float64(), nullable=False),
        pa.field("judge_scores", pa.list_(pa.float64()), nullable=False),
        pa.field("num_judges", pa.int8(), nullable=False),
        pa.field("start_frame", pa.int32(), nullable=False),  # absolute, in the raw video
        pa.field("end_frame", pa.int32(), nullable=False),  # inclusive
        pa.field("num_frames", pa.int32(), nullable=False),  # end - start + 1
        pa.field("frame_labels", pa.list_(pa.int16()), nullable=True),  # null for MTL-AQA
        pa.field("steps_transit_frames", pa.list_(pa.int32()), nullable=True),  # null for MTL-AQA
        # (t1, t2) on the protocol scale; null for MTL-AQA and where the 2nd step is missing
        pa.field("transitions_96", pa.list_(pa.int32()), nullable=True),
    ],
    metadata={"aqa.table": "dives", "aqa.schema_version": SCHEMA_VERSION},
)

LEXICON_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int16(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("used_dives", pa.int32(), nullable=False),  # dives with at least one such frame
        pa.field("used_frames", pa.int64(), nullable=False),  # frames labelled with it, all dives
    ],
    metadata={"aqa.table": "lexicon", "aqa.schema_version": SCHEMA_VERSION},
)


class SchemaError(AqaError):
    """A table does not match the expected schema."""


def table_from_rows(rows: Iterable[Mapping[str, Any]], schema: pa.Schema,
                    metadata: Mapping[str, str] | None = None) -> pa.Table:
    """Build a table column by column against `schema` (types enforced, no pandas metadata)."""
    rows = list(rows)
    columns = {}
    for field in schema:
        values = [row[field.name] for row in rows]
        try:
            columns[field.name] = pa.array(values, type=field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise SchemaError(f"column {field.name!r}: values do not fit {field.type}: {exc}") from exc
        if not field.nullable and columns[field.name].null_count:
            raise SchemaError(f"column {field.name!r}: {columns[field.name].null_count} null value(s) "
                              "in a non-nullable column")
    meta = dict(schema.metadata or {})
    meta.update({k.encode(): v.encode() for k, v in (metadata or {}).items()})
    return pa.Table.from_arrays(list(columns.values()), schema=schema.with_metadata(meta))


def write_parquet_atomic(table: pa.Table, path: str | Path) -> None:
    """Write a Parquet file atomically; same table, same bytes (no timestamps are stored)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)


def check_schema(actual: pa.Schema, expected: pa.Schema, source: str) -> None:
    """Raise SchemaError naming `source` and every missing, extra or mistyped column."""
    problems = []
    actual_names = actual.names
    for field in expected:
        if field.name not in actual_names:
            problems.append(f"missing column {field.name!r} ({field.type})")
        elif not actual.field(field.name).type.equals(field.type):
            problems.append(f"column {field.name!r} is {actual.field(field.name).type}, expected {field.type}")
    extra = [n for n in actual_names if n not in expected.names]
    if extra:
        problems.append(f"unexpected column(s) {', '.join(map(repr, extra))}")
    if not problems and actual_names != expected.names:
        problems.append(f"columns in order {actual_names}, expected {expected.names}")
    if problems:
        table = (expected.metadata or {}).get(b"aqa.table", b"?").decode()
        raise SchemaError(f"{source}: not a {table} table: " + "; ".join(problems))
