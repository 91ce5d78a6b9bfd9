"""aqa.logs: log lines and progress bars on one stderr; numbers in log lines."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from aqa.logs import num

SRC = Path(__file__).resolve().parents[2] / "src"

# A bar drawn, two log lines while it runs, the bar finished: what a stage writes to stderr.
SCRIPT = """
import logging, time
from tqdm import tqdm
from aqa.logs import setup_logging
setup_logging()
log = logging.getLogger("aqa.test")
with tqdm(total=4, desc="bar", mininterval=0, miniters=1) as bar:
    for i in range(4):
        bar.update()
        if i in (1, 2):
            log.info("line %d", i)
"""


def rendered(text: str) -> list[str]:
    """What a terminal shows: each line with its carriage returns applied (later text overwrites)."""
    shown = []
    for line in text.split("\n"):
        screen: list[str] = []
        for part in line.split("\r"):
            screen[: len(part)] = list(part)
        shown.append("".join(screen).rstrip())
    return shown


def test_a_log_line_never_lands_inside_a_progress_bar():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    lines = rendered(proc.stderr)
    logged = [line for line in lines if "aqa.test" in line]
    assert len(logged) == 2, proc.stderr
    for line in logged:   # the whole line is the log record: no bar before it, none after it
        assert re.fullmatch(r"\d{4}-\d\d-\d\d [\d:,]+ INFO aqa\.test: line \d", line), repr(line)
    assert any(re.match(r"bar: 100%", line) for line in lines), proc.stderr


def test_numbers_in_log_lines_have_four_significant_digits():
    assert num(0.8123456789012345) == "0.8123"
    assert num(12.3456789) == "12.35"
    assert num(None) == "-"
    assert num(3) == "3"
    assert num(float("nan")) == "nan"
