"""The dependency pins: one place (requirements.txt), mirrored by environment.yml."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _requirements() -> set[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}


def test_every_requirement_is_pinned_exactly():
    for req in _requirements():
        assert "==" in req, f"requirements.txt: {req} is not pinned to an exact version"


def test_environment_yml_mirrors_requirements():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {p for p in pip if not p.startswith("-e")} == _requirements()


def test_the_test_oracle_is_pinned_exactly():
    lines = (REPO / "requirements-test.txt").read_text().splitlines()
    reqs = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    assert "pysodmetrics==1.6.2" in reqs
    for req in reqs:
        assert "==" in req, f"requirements-test.txt: {req} is not pinned to an exact version"
