"""Shared fixtures: the real params.yaml shrunk to tiny sizes, and the shared reference data."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from aqa.params import load_params
from shared_data import shared_path
from tiny_params import shrink

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_params() -> dict:
    """The project's own params.yaml, read and validated as every stage reads it (YAML 1.2)."""
    return load_params(REPO / "params.yaml")


@pytest.fixture()
def tiny_params(repo_params) -> dict:
    """params.yaml shrunk for tests: a few dives, small frames, short training."""
    return shrink(copy.deepcopy(repo_params))


@pytest.fixture()
def finediving_annotations_dir() -> Path:
    return shared_path("FineDiving", "Annotations")


@pytest.fixture()
def mtl_aqa_info_dir() -> Path:
    return shared_path("MTL-AQA", "info")
