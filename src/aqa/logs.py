"""Logging set-up shared by the CLI: stderr plus an optional per-job log file.

A failure's traceback goes to the log file only (`log_failure`): stderr gets the one line the CLI
prints for an expected failure, or Python's own traceback for a bug. Lines on stderr go through
tqdm.write, which clears an open progress bar, writes the line and draws the bar again below it,
so a bar and a log line never share a line. Numbers in log lines: `num` (4 significant digits).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

FILE_ONLY = {"file_only": True}  # `extra=` of a record that stderr must not show


class _NotFileOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


class _BarSafeHandler(logging.StreamHandler):
    """stderr through tqdm.write: a log line never lands in the middle of a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:   # as logging.StreamHandler does: report, never raise from logging
            self.handleError(record)


def num(value: Any, digits: int = 4) -> str:
    """A number for a log line: `digits` significant digits (0.8123), `-` for None; JSON outputs
    keep full precision."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    rank = os.environ.get("RANK", "0") if "WORLD_SIZE" in os.environ else "0"
    if log_file is not None and rank != "0":   # torchrun's other processes: their own file beside it
        log_file = Path(log_file).with_name(f"{Path(log_file).stem}.rank{rank}{Path(log_file).suffix}")
    stderr = _BarSafeHandler(sys.stderr)
    stderr.addFilter(_NotFileOnly())
    handlers: list[logging.Handler] = [stderr]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if rank == "0"
        else f"%(asctime)s %(levelname)s [process {rank}] %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def log_failure(message: str) -> None:
    """Write `message` and the exception being handled, with its traceback, to the log file only."""
    if any(isinstance(h, logging.FileHandler) for h in logging.getLogger().handlers):
        logging.getLogger("aqa").error(message, exc_info=True, extra=FILE_ONLY)
