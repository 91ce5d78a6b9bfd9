"""aqa.workdir: a long stage's work folder starts from its last output (the output itself, or the
one dvc.lock records, from DVC's cache) and becomes the output, whole, when the stage is done."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml

from aqa.workdir import committed_files, publish, start


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _write(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


FILES = {"seed0/checkpoint.pt": b"ckpt", "seed0/history.json": b"[]", ".train.done": b""}


def _commit_to_dvc_cache(project: Path, out: str, files: dict[str, bytes]) -> None:
    """What `dvc commit` leaves: the files and the .dir listing under .dvc/cache, the entry in dvc.lock."""
    objects = project / ".dvc/cache/files/md5"
    entries = []
    for rel, data in sorted(files.items()):
        md5 = hashlib.md5(data).hexdigest()
        _write(objects, {f"{md5[:2]}/{md5[2:]}": data})
        entries.append({"md5": md5, "relpath": rel})
    listing = json.dumps(entries).encode()
    dir_md5 = hashlib.md5(listing).hexdigest() + ".dir"
    _write(objects, {f"{dir_md5[:2]}/{dir_md5[2:]}": listing})
    (project / "dvc.lock").write_text(yaml.safe_dump(
        {"schema": "2.0", "stages": {"train@fr-dn": {"cmd": "x", "outs": [{"path": out, "md5": dir_md5}]}}}))


@pytest.fixture()
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_start_copies_the_output_dvc_lock_records_from_dvc_cache(project):
    _commit_to_dvc_cache(project, "models/fr-dn", FILES)
    assert start(Path(".aqa/work/models/fr-dn"), Path("models/fr-dn")).endswith("(DVC's cache)")
    work = project / ".aqa/work/models/fr-dn"
    assert _tree(work) == {"seed0/checkpoint.pt": b"ckpt", "seed0/history.json": b"[]"}   # no Snakemake flag
    cached = committed_files(Path("models/fr-dn"))
    assert cached and not any(os.path.samefile(work / rel, path) for rel, path in cached if rel[0] != ".")


def test_start_gives_up_quietly_when_dvc_cache_lacks_a_file_or_the_lock_another_output(project):
    _commit_to_dvc_cache(project, "models/fr-dn", FILES)
    assert start(Path("work/other"), Path("models/other")) == "nothing" and not Path("work/other").exists()
    next(p for p in (project / ".dvc/cache").rglob("*") if p.is_file() and p.read_bytes() == b"ckpt").unlink()
    assert committed_files(Path("models/fr-dn")) is None           # e.g. a clone that did not pull
    assert start(Path("work/fr-dn"), Path("models/fr-dn")) == "nothing"


def test_start_prefers_an_existing_work_folder_then_the_output(project):
    _commit_to_dvc_cache(project, "models/fr-dn", FILES)
    _write(project / "work", {"seed0/checkpoint.pt": b"half"})      # a killed run's state
    assert start(Path("work"), Path("models/fr-dn")) == "a previous run's work folder"
    assert _tree(project / "work") == {"seed0/checkpoint.pt": b"half"}
    _write(project / "out", {"seed0/checkpoint.pt": b"mine"})       # the Snakemake driver keeps its output
    start(Path("work2"), Path("out"))
    assert _tree(project / "work2") == {"seed0/checkpoint.pt": b"mine"}


def test_publish_moves_the_work_folder_onto_the_output(project):
    work = _write(project / "work", {"seed0/checkpoint.pt": b"new"})
    out = _write(project / "out", {"seed7/old.pt": b"old"})
    publish(work, out)
    assert _tree(out) == {"seed0/checkpoint.pt": b"new"} and not work.exists()
    assert not list(project.glob(".out.*"))


def test_a_kill_during_an_earlier_publish_leaves_nothing_behind(project):
    work = _write(project / "work", {"a": b"new"})
    _write(project, {".out.123.old/a": b"old"})                     # the old output, renamed aside
    publish(work, project / "out")
    assert _tree(project / "out") == {"a": b"new"} and not list(project.glob(".out.*"))


def test_an_empty_output_folder_starts_from_dvc_cache(project):
    """Under `dvc repro` DVC deletes the output, then Snakemake creates its folder (the parent of
    the job's flag <out>/.train.done) before the command runs: the empty folder is no last state."""
    _commit_to_dvc_cache(project, "models/fr-dn", FILES)
    (project / "models/fr-dn").mkdir(parents=True)
    assert start(Path("work"), Path("models/fr-dn")).endswith("(DVC's cache)")
    assert _tree(project / "work") == {"seed0/checkpoint.pt": b"ckpt", "seed0/history.json": b"[]"}
    _write(project / "flag-only", {".train.done": b""})                # a Snakemake flag alone: no state either
    _commit_to_dvc_cache(project, "flag-only", FILES)
    assert start(Path("work2"), Path("flag-only")).endswith("(DVC's cache)")


@pytest.mark.parametrize("config", ["config", "config.local"])
def test_the_dvc_cache_folder_of_the_project_config_is_read(project, tmp_path_factory, config):
    _commit_to_dvc_cache(project, "models/fr-dn", FILES)
    elsewhere = tmp_path_factory.mktemp("shared-cache")
    os.rename(project / ".dvc/cache/files", elsewhere / "files")        # as after `dvc cache dir <elsewhere>`
    assert committed_files(Path("models/fr-dn")) is None
    (project / ".dvc" / config).write_text(f"[core]\n    analytics = false\n[cache]\n    dir = {elsewhere}\n")
    assert start(Path("work"), Path("models/fr-dn")).endswith("(DVC's cache)")
    assert _tree(project / "work")["seed0/checkpoint.pt"] == b"ckpt"
