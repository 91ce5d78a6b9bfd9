"""A long stage's resumable working state, kept outside its DVC output (docs/RELIABILITY.md "Resume").

DVC deletes a stage's outputs before it runs the stage unless they are `persist: true`, and it
keeps no run-cache entry for a stage with a persisted output. So extract_features and train
work in an untracked folder (.aqa/work/<output path>, passed as --work by the rules):

- `start`: a work folder left by a killed or failed run is resumed as it is. Without one, the
  stage starts from its last state: the output itself when it still holds files (the Snakemake
  driver, a run by hand), else the output as dvc.lock last recorded it, copied from DVC's cache
  (so a feature cache is extended, and finished seeds are skipped, after DVC deleted the output;
  in a fresh clone too, once `dvc pull` brought the cache). The stage's own checks (feature
  manifest and frame digests, checkpoints' config and provenance) decide what of it is reused.
- `publish`: the finished work folder is renamed onto the output, so the output is whole or
  absent, and no second copy stays behind.

Copies from DVC's cache, not links: a link would let a fault injected into a work file (or any
in-place write) change the cached object.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path

import yaml

from aqa.io import atomic_path

log = logging.getLogger(__name__)

WORK_ROOT = Path(".aqa/work")
DVC_LOCK = Path("dvc.lock")
DVC_DIR = Path(".dvc")


def _cache_dir() -> Path:
    """DVC's cache folder: `cache.dir` of the project's config (config.local first; a relative one
    is relative to .dvc/, as DVC reads it), else .dvc/cache. (A cache.dir set only in the user's or
    the system's DVC config is not seen: the stage then starts from nothing and recomputes.)"""
    for name in ("config.local", "config"):
        try:
            lines = (DVC_DIR / name).read_text().splitlines()
        except OSError:
            continue
        section = None
        for line in (raw.strip() for raw in lines):
            if line.startswith("["):
                section = line.strip("[]'\" ")
            elif section == "cache" and (found := re.fullmatch(r"dir\s*=\s*(.+)", line)):
                return DVC_DIR / os.path.expanduser(found.group(1).strip().strip("'\""))
    return DVC_DIR / "cache"


def _object(md5: str, objects: Path) -> Path:
    return objects / md5[:2] / md5[2:]   # DVC 3's cache layout: <cache>/files/md5/<2>/<30>


def _lock_path(out: Path) -> str | None:
    """`out` as dvc.lock names it (relative to the project, the current folder), or None."""
    if not out.is_absolute():
        return out.as_posix()
    try:
        return out.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return None


def committed_files(out: str | Path) -> list[tuple[str, Path]] | None:
    """(relative path, DVC cache file) of every file of the folder `out` as dvc.lock last recorded
    it, or None when dvc.lock does not list it or DVC's cache lacks any of its files."""
    name = _lock_path(Path(out))
    try:
        # libyaml's loader: dvc.lock of the default is ~120 kB (0.04 s instead of 0.3 s)
        lock = yaml.load(DVC_LOCK.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if name else None
    except (OSError, yaml.YAMLError):
        return None
    stages = lock.get("stages") if isinstance(lock, dict) else None
    md5 = next((o.get("md5") for stage in (stages or {}).values() if isinstance(stage, dict)
                for o in stage.get("outs") or [] if isinstance(o, dict) and o.get("path") == name), None)
    if not isinstance(md5, str) or not md5.endswith(".dir"):
        return None
    try:
        objects = _cache_dir() / "files" / "md5"
        entries = json.loads(_object(md5, objects).read_text())
        files = [(str(e["relpath"]), _object(str(e["md5"]), objects)) for e in entries]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return files if all(path.is_file() for _, path in files) else None


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        shutil.copy2(src, dst)   # another file system, or one without links
    return dst


def _state_files(files: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """The files of a stage's state, without Snakemake's flags (.train.done, .extract_features.done)."""
    return [(rel, path) for rel, path in files if not rel.startswith(".")]


def start(work: str | Path, out: str | Path) -> str:
    """Make sure the work folder holds the stage's last state; returns where it came from."""
    work, out = Path(work), Path(out)
    if work.exists():
        log.info("%s: resumed as a previous run left it", work)
        return "a previous run's work folder"
    # links are safe: the output is only ever replaced by `publish`, never written in place
    files = _state_files([(p.relative_to(out).as_posix(), p) for p in sorted(out.rglob("*")) if p.is_file()]
                         if out.is_dir() else [])
    place, source = _link_or_copy, f"the output {out}"
    if not files:
        # No output, or an empty folder: DVC deletes the output before it runs the stage, and
        # Snakemake then creates the folder of the job's flag (<out>/.train.done) before the
        # command starts, so an empty folder says nothing about the last state.
        files = _state_files(committed_files(out) or [])
        place, source = shutil.copyfile, f"{out} as dvc.lock records it (DVC's cache)"
    if not files:
        log.info("%s: started from nothing (no earlier output in %s or in DVC's cache)", work, out)
        return "nothing"
    with atomic_path(work) as tmp:
        for rel, path in files:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            place(str(path), str(tmp / rel))
    log.info("%s: started from %s (%d files)", work, source, len(files))
    return source


def publish(work: str | Path, out: str | Path) -> None:
    """Move the finished work folder onto `out`. The old output is first renamed aside, so a kill
    at any moment leaves the old output, or none (the work folder then still holds everything and
    the next run publishes it), or the new one; never a mixture."""
    work, out = Path(work), Path(out)
    if work.resolve() == out.resolve():
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    for old in out.parent.glob(f".{out.name}.*.old"):   # left by a kill during an earlier publish
        shutil.rmtree(old, ignore_errors=True)
    aside = None
    if out.exists():
        aside = out.parent / f".{out.name}.{os.getpid()}.old"
        os.replace(out, aside)
    try:
        try:
            os.replace(work, out)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            with atomic_path(out) as tmp:   # the work folder is on another file system
                shutil.copytree(work, tmp)
            shutil.rmtree(work)
    except BaseException:
        if aside is not None and not out.exists():
            os.replace(aside, out)   # the old output back
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
