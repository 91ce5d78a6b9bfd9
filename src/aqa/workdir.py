"""A long stage's resumable working state, kept outside its DVC output (docs/RELIABILITY.md "Resume").

DVC deletes a stage's outputs before it runs the stage unless they are `persist: true`, and it
keeps no run-cache entry for a stage with a persisted output. So extract_features and train
work in an untracked folder (.aqa/work/<output path>, passed as --work by the rules), which
survives that deletion: a killed job resumes from it and a feature cache is extended from it.
When the stage is done, `publish` makes the output a snapshot of the work folder: hard links to
its files (a copy where the file system has none) in a temporary beside the output, renamed
onto it, so the output is whole or absent. The work files are only ever replaced (temp +
rename), never written in place, so a later run cannot change a published file through a link.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Iterable

from aqa.io import atomic_path

WORK_ROOT = Path(".aqa/work")


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        shutil.copy2(src, dst)   # another file system, or none that links
    return dst


def _not_published(folder: str, names: list[str]) -> list[str]:
    """Interrupted writes' temporaries (.<name>.<random>.tmp) stay in the work folder."""
    return [n for n in names if n.startswith(".") and n.endswith(".tmp")]


def publish(work: str | Path, out: str | Path, names: Iterable[str] | None = None) -> None:
    """Replace `out` by a snapshot of `work` (only its entries `names`, if given): whole or not at all."""
    work, out = Path(work), Path(out)
    if work.resolve() == out.resolve():
        return
    chosen = sorted(os.listdir(work)) if names is None else list(names)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for name in chosen:
            src = work / name
            if src.is_dir():
                shutil.copytree(src, tmp / name, copy_function=_link_or_copy, ignore=_not_published)
            elif not _not_published(str(work), [name]):
                _link_or_copy(str(src), str(tmp / name))
