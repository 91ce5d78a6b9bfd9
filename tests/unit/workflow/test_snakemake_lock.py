"""aqa.snakemake_lock with real processes and a real Snakemake: a lock left by a killed run is
removed, a lock of a live run is not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aqa.snakemake_lock import hold_driver_lock

BIN = Path(sys.executable).parent

HOLDER = textwrap.dedent("""
    import sys, time
    from aqa.snakemake_lock import hold_driver_lock
    hold_driver_lock(sys.argv[1])
    print("holding", flush=True)
    time.sleep(120)
""")


def stale_locks(workdir: Path) -> list[Path]:
    """Lock files as a killed Snakemake leaves them."""
    locks = workdir / ".snakemake" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    for name in ("0.input.lock", "0.output.lock"):
        (locks / name).write_text("some/output\n")
    return sorted(locks.iterdir())


def start_holder(workdir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(workdir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def holder_in_subprocess(workdir: Path) -> list[str]:
    """What hold_driver_lock removes when a fresh process (not this one) calls it."""
    code = "import sys; from aqa.snakemake_lock import hold_driver_lock; print([p.name for p in hold_driver_lock(sys.argv[1])])"
    out = subprocess.run([sys.executable, "-c", code, str(workdir)], capture_output=True, text=True, check=True)
    return eval(out.stdout)  # a list of names printed by Python itself


def test_locks_of_a_killed_run_are_removed(tmp_path):
    holder = start_holder(tmp_path)
    stale_locks(tmp_path)  # its Snakemake's lock files, left as they are by the kill
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert holder_in_subprocess(tmp_path) == ["0.input.lock", "0.output.lock"]
    assert not list((tmp_path / ".snakemake" / "locks").iterdir())


def test_locks_of_a_live_run_are_kept(tmp_path):
    holder = start_holder(tmp_path)
    try:
        locks = stale_locks(tmp_path)
        assert holder_in_subprocess(tmp_path) == []
        assert sorted((tmp_path / ".snakemake" / "locks").iterdir()) == locks
    finally:
        holder.kill()
        holder.wait()


def test_a_second_call_in_the_same_process_does_nothing(tmp_path):
    assert hold_driver_lock(tmp_path) == []
    stale_locks(tmp_path)
    assert hold_driver_lock(tmp_path) == []  # this process's own Snakemake would hold them


SNAKEFILE = textwrap.dedent("""
    from aqa.snakemake_lock import hold_driver_lock
    hold_driver_lock(".")

    rule slow:
        output: "slow.txt"
        shell: "sleep 60; touch {output}"
""")


@pytest.mark.timeout(120)
def test_a_real_snakemake_killed_with_sigkill_does_not_block_the_next(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    first = subprocess.Popen([str(BIN / "snakemake"), "-c1", "slow.txt"], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    locks = tmp_path / ".snakemake" / "locks"
    deadline = time.monotonic() + 60
    while not (locks.is_dir() and list(locks.iterdir())):
        assert first.poll() is None and time.monotonic() < deadline, "snakemake never took its lock"
        time.sleep(0.1)

    # While it lives, a second one is refused by Snakemake's lock, which is kept.
    busy = subprocess.run([str(BIN / "snakemake"), "-c1", "slow.txt"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert busy.returncode != 0 and "LockException" in busy.stdout + busy.stderr
    assert list(locks.iterdir())

    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    dry = subprocess.run([str(BIN / "snakemake"), "-c1", "-n", "slow.txt"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert not list(locks.glob("*.lock"))
