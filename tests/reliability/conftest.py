"""Fixtures of the reliability suite (helpers in harness.py). Faults are injected into copies
of a tiny pipeline project, never into the project itself.

`tiny_project` is a fresh, never-run project; `built_project` is a copy of one on which
`dvc repro` has completed (built once per session, copied per test, so a test may damage it).
Every test in this folder is marked `reliability`.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch

from harness import make_project, run
from tiny_params import shrink


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    """Random I3D weights given as a user-supplied state dict: no download in tests."""
    from aqa.models.i3d import InceptionI3d

    path = tmp_path_factory.mktemp("weights") / "random_i3d.pt"
    torch.manual_seed(0)
    torch.save(InceptionI3d().state_dict(), path)
    return path


@pytest.fixture()
def tiny_project(tmp_path, tiny_params, random_weights) -> Path:
    """A fresh git + DVC repository with the pipeline and tiny params (variant fr-dn on FineDiving
    and on the MTL-AQA stand-in), not yet run."""
    return make_project(tmp_path / "project", tiny_params, random_weights)


@pytest.fixture(scope="session")
def _built_once(tmp_path_factory, repo_params, random_weights) -> Path:
    root = make_project(tmp_path_factory.mktemp("built") / "project", shrink(copy.deepcopy(repo_params)),
                        random_weights)
    run(["dvc", "repro"], root)
    return root


@pytest.fixture()
def built_project(tmp_path, _built_once) -> Path:
    """A copy (in this test's own folder) of a tiny project on which `dvc repro` has completed."""
    root = tmp_path / "project"
    shutil.copytree(_built_once, root, symlinks=True)
    return root
