"""Every test in this folder runs the whole tiny pipeline through the real DVC and Snakemake: it is
marked `pipeline`, kept out of the default run (`make test`) for its time and run by CI with the
reliability suite (`make test-pipeline`)."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.pipeline)
