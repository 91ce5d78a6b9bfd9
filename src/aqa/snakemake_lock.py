"""Snakemake's working-directory lock, made to clear itself when the run that held it was killed.

Snakemake marks a working directory busy with files in `.snakemake/locks/`. A Snakemake killed
with SIGKILL (or a power loss) leaves them behind, and every later run, `dvc repro` included,
stops with LockException until someone runs `snakemake --unlock`. Those files cannot tell a dead
holder from a live one; an OS lock can, since the kernel drops it when its process dies.

So every Snakemake process of this workflow holds `.snakemake/aqa-driver.flock` (flock, shared)
for as long as it lives (the Snakefile calls `hold_driver_lock` while it is read, before
Snakemake takes its own lock). A starting process that can take it exclusively knows that no
other Snakemake of this workflow is alive in the folder: lock files left there are stale and it
removes them. When another one is alive, nothing is touched and Snakemake's own check decides.
Local only: Snakemake job steps on cluster nodes (exec mode subprocess/remote) are left alone.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: keep Snakemake's own behaviour
    fcntl = None

log = logging.getLogger(__name__)

LOCK_NAME = "aqa-driver.flock"

# Open descriptors of the driver locks this process holds; closing one would release its lock.
_held: dict[Path, int] = {}


def hold_driver_lock(workdir: str | Path) -> list[Path]:
    """Hold the driver lock of `workdir` for the life of this process; return the stale lock files removed."""
    if fcntl is None:
        return []
    state = Path(workdir) / ".snakemake"
    path = state / LOCK_NAME
    if path.resolve() in _held:  # the Snakefile is read more than once in one process
        return []
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    removed: list[Path] = []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # another Snakemake of this workflow is alive here: its locks are real
    else:
        removed = _remove_lock_files(state / "locks")
    # Shared from now on, so concurrent runs can coexist (Snakemake's own lock arbitrates them);
    # a process that meets our exclusive lock waits here only while stale files are removed.
    fcntl.flock(fd, fcntl.LOCK_SH)
    _held[path.resolve()] = fd
    return removed


def _remove_lock_files(lock_dir: Path) -> list[Path]:
    removed = []
    for lock_file in sorted(lock_dir.glob("*.lock")) if lock_dir.is_dir() else []:
        lock_file.unlink(missing_ok=True)
        removed.append(lock_file)
    return removed
