import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aqa.data.schema import (
    DIVES_SCHEMA,
    LEXICON_SCHEMA,
    SchemaError,
    check_schema,
    table_from_rows,
    write_parquet_atomic,
)


def _row(**over):
    row = {
        "key": "v/0", "video": "v", "idx": 0, "split": "train", "action_type": "107b",
        "difficulty": 3.0, "dive_score": 66.0, "judge_scores": [7.5, 7.5, 7.0], "num_judges": 3,
        "start_frame": 10, "end_frame": 105, "num_frames": 96, "frame_labels": [1] * 96,
        "steps_transit_frames": [29, 69], "transitions_96": [29, 69],
    }
    row.update(over)
    return row


def test_contract_columns():
    assert DIVES_SCHEMA.names == [
        "key", "video", "idx", "split", "action_type", "difficulty", "dive_score", "judge_scores",
        "num_judges", "start_frame", "end_frame", "num_frames", "frame_labels",
        "steps_transit_frames", "transitions_96",
    ]
    assert DIVES_SCHEMA.field("frame_labels").type == pa.list_(pa.int16())
    assert DIVES_SCHEMA.field("num_judges").type == pa.int8()
    assert LEXICON_SCHEMA.names[:2] == ["id", "name"]


def test_table_types_are_enforced():
    t = table_from_rows([_row(), _row(key="m/1", frame_labels=None, steps_transit_frames=None,
                                      transitions_96=None)], DIVES_SCHEMA, {"aqa.dataset": "x"})
    assert t.schema.equals(DIVES_SCHEMA, check_metadata=False)
    assert t.schema.metadata[b"aqa.dataset"] == b"x" and t.schema.metadata[b"aqa.table"] == b"dives"
    assert t.column("transitions_96").null_count == 1


def test_values_that_do_not_fit_are_errors():
    with pytest.raises(SchemaError, match="frame_labels"):
        table_from_rows([_row(frame_labels=[40000])], DIVES_SCHEMA)
    with pytest.raises(SchemaError, match="'split'.*non-nullable"):
        table_from_rows([_row(split=None)], DIVES_SCHEMA)
    with pytest.raises(SchemaError, match="difficulty"):
        table_from_rows([_row(difficulty="hard")], DIVES_SCHEMA)


def test_same_table_same_bytes(tmp_path):
    t = table_from_rows([_row(), _row(key="v/1", idx=1)], DIVES_SCHEMA)
    write_parquet_atomic(t, tmp_path / "a.parquet")
    write_parquet_atomic(t, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert pq.read_table(tmp_path / "a.parquet").equals(t)
    assert [p.name for p in tmp_path.iterdir()] != [] and not list(tmp_path.glob(".*.tmp"))


def test_check_schema_names_the_problems():
    check_schema(DIVES_SCHEMA, DIVES_SCHEMA, "ok")
    bad = DIVES_SCHEMA.remove(DIVES_SCHEMA.get_field_index("split")).set(
        DIVES_SCHEMA.get_field_index("video") , pa.field("video", pa.int64())).append(pa.field("x", pa.int8()))
    with pytest.raises(SchemaError) as err:
        check_schema(bad, DIVES_SCHEMA, "f.parquet")
    msg = str(err.value)
    assert msg.startswith("f.parquet: not a dives table")
    assert "missing column 'split'" in msg and "'video' is int64" in msg and "'x'" in msg
