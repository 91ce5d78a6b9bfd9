"""Fixtures for the feature tests: tiny dives on disk and the shrunk extract_features params."""

from __future__ import annotations

from pathlib import Path

import pytest
from feature_helpers import write_dives, write_fetched_weights, write_frames


@pytest.fixture()
def feature_cfg(tiny_params) -> dict:
    return dict(tiny_params["extract_features"])


@pytest.fixture()
def tiny_dives(tmp_path) -> tuple[Path, Path, list[tuple[str, int, int, int]]]:
    """3 dives of ~20 frames (64x112) over two videos; returns (frames_root, dives.parquet, dives)."""
    dives = [("01", 1, 100, 119), ("01", 2, 300, 321), ("02", 7, 5, 22)]
    frames = tmp_path / "frames"
    for i, (video, idx, start, end) in enumerate(dives):
        write_frames(frames / video / str(idx), start, end, seed=i)
    return frames, write_dives(tmp_path / "dives.parquet", dives), dives


@pytest.fixture(scope="session")
def fetched_weights(tmp_path_factory) -> Path:
    """Random I3D weights as fetch_i3d leaves them (with manifest.json); copy before damaging."""
    return write_fetched_weights(tmp_path_factory.mktemp("weights"))
