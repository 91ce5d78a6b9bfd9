"""Logging set-up shared by the CLI: stderr plus an optional per-job log file.

A failure's traceback goes to the log file only (`log_failure`): stderr gets the one line the CLI
prints for an expected failure, or Python's own traceback for a bug.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

FILE_ONLY = {"file_only": True}  # `extra=` of a record that stderr must not show


class _NotFileOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    rank = os.environ.get("RANK", "0") if "WORLD_SIZE" in os.environ else "0"
    if log_file is not None and rank != "0":   # torchrun's other processes: their own file beside it
        log_file = Path(log_file).with_name(f"{Path(log_file).stem}.rank{rank}{Path(log_file).suffix}")
    stderr = logging.StreamHandler()
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
