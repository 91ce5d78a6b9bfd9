"""aqa.workdir.publish: the output of a long stage is a whole snapshot of its work folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aqa.workdir import publish


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def work(tmp_path) -> Path:
    work = tmp_path / "work"
    (work / "seed0").mkdir(parents=True)
    (work / "seed0" / "checkpoint.pt").write_bytes(b"ckpt")
    (work / "seed0" / ".checkpoint.pt.x1.tmp").write_bytes(b"half")   # a killed write's temporary
    (work / "seed1").mkdir()
    (work / "seed1" / "history.json").write_text("[]")
    (work / "manifest.json").write_text("{}")
    return work


def test_publish_links_every_file_and_leaves_temporaries_behind(work, tmp_path):
    out = tmp_path / "out"
    publish(work, out)
    assert _tree(out) == {"manifest.json": b"{}", "seed0/checkpoint.pt": b"ckpt", "seed1/history.json": b"[]"}
    assert os.path.samefile(out / "seed0" / "checkpoint.pt", work / "seed0" / "checkpoint.pt")   # no copy
    assert not list(tmp_path.glob(".out.*"))


def test_publish_replaces_the_old_output_whole_and_only_with_the_names_asked(work, tmp_path):
    out = tmp_path / "out"
    (out / "seed7").mkdir(parents=True)
    (out / "seed7" / "old.pt").write_bytes(b"old")
    publish(work, out, ["seed0"])
    assert _tree(out) == {"seed0/checkpoint.pt": b"ckpt"}


def test_a_failed_publish_leaves_the_old_output(work, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept").write_bytes(b"kept")
    with pytest.raises(FileNotFoundError):
        publish(work, out, ["seed0", "seed9"])     # seed9 is not in the work folder
    assert _tree(out) == {"kept": b"kept"}
    assert not list(tmp_path.glob(".out.*"))


def test_a_later_atomic_write_in_the_work_folder_does_not_reach_the_published_file(work, tmp_path):
    from aqa.io import write_bytes_atomic

    out = tmp_path / "out"
    publish(work, out)
    write_bytes_atomic(work / "seed0" / "checkpoint.pt", b"next run")
    assert (out / "seed0" / "checkpoint.pt").read_bytes() == b"ckpt"
