"""`snakemake --lint`: no finding but the one the Snakefile justifies (no per-rule conda/container)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
JUSTIFIED = {"Specify a conda environment or container for each rule."}   # see the Snakefile's header


def test_snakemake_lint_has_only_the_justified_finding():
    snakemake = Path(sys.executable).parent / "snakemake"
    proc = subprocess.run([str(snakemake), "--lint", "--workflow-profile", "none"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    findings = re.findall(r"^    \* (.+?):?$", out, flags=re.M)
    assert findings, f"no lint output to check (exit {proc.returncode}):\n{out[-3000:]}"
    assert set(findings) == JUSTIFIED, sorted(set(findings) - JUSTIFIED)
