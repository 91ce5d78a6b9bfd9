"""Reading the report's CSV tables in tests: every row, and the one row of a label and result."""

from __future__ import annotations

import csv


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def row(rows, label, result, *, prefix=False):
    """The single row whose first cell is `label` and whose second is `result` (or starts with it,
    with prefix=True); fails unless exactly one matches."""
    (found,) = [r for r in rows if r[0] == label and (r[1].startswith(result) if prefix else r[1] == result)]
    return found
