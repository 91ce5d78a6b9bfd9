"""How long DVC takes to notice a change in a real frames folder (aqa.data.real_inputs).

    .venv/bin/python benchmarks/bench_real_data_hash.py FRAMES [--project-to 312000] [--json out.json]

FRAMES: a frames folder in the release layout (<video>/<idx>/<frame:05d>.jpg), e.g. a built
project's data/interim/frames/finediving (extract_frames' JPEGs of the stand-in). The script makes
a throw-away git + DVC project beside a temporary copy of FRAMES, whose one stage depends on a
link to the copy (as extract_features@<dataset> depends on .aqa/inputs/<dataset>/frames), then
times the real `dvc` commands:
  cold    `dvc repro` the first time: DVC hashes every file (md5 of its bytes; its state database empty)
  warm    `dvc status` with nothing changed: DVC lists the folder and finds every file in its state
  changed `dvc status` after one frame's bytes changed: one file re-hashed, the stage reported
  touched `dvc status` after one frame was touched (same bytes): re-hashed, nothing reported
and, for comparison, Python reading every file and hashing it with md5 (page cache warm), and
the time of `dvc version` (DVC's start-up, included in each command above). Rates per file and
per MB, and the times projected linearly to `--project-to` files of the same mean size (the
real FineDiving: ~3000 dives x ~104 frames = ~312,000) and to the size `--real-kb` given.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def dvc(args: list[str], cwd: Path) -> tuple[float, str]:
    began = time.perf_counter()
    proc = subprocess.run([str(BIN / "dvc"), *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}"))
    took = time.perf_counter() - began
    if proc.returncode:
        raise SystemExit(f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return took, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("frames", type=Path)
    ap.add_argument("--project-to", type=int, default=312_000, help="files to project to")
    ap.add_argument("--real-kb", type=float, default=None, help="also project bytes at this mean frame size")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_hash_"))
    try:
        copy = work / "frames"
        shutil.copytree(args.frames, copy, ignore=shutil.ignore_patterns(".*"))
        files = sorted(p for p in copy.rglob("*.jpg"))
        size = sum(p.stat().st_size for p in files)
        proj = work / "project"
        proj.mkdir()
        subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
        dvc(["init", "-q"], proj)
        dvc(["config", "core.analytics", "false"], proj)
        (proj / ".aqa/inputs/finediving").mkdir(parents=True)
        (proj / ".aqa/inputs/finediving/frames").symlink_to(copy, target_is_directory=True)
        (proj / "dvc.yaml").write_text("stages:\n  reads_frames:\n    cmd: echo read > out.txt\n"
                                       "    deps:\n      - .aqa/inputs/finediving/frames\n"
                                       "    outs:\n      - out.txt\n")
        startup = min(dvc(["version"], proj)[0] for _ in range(3))

        began = time.perf_counter()
        for p in files:
            hashlib.md5(p.read_bytes()).hexdigest()
        python_md5 = time.perf_counter() - began

        cold, _ = dvc(["repro", "-q"], proj)
        warm = min(dvc(["status"], proj)[0] for _ in range(3))
        victim = files[len(files) // 2]
        victim.write_bytes(victim.read_bytes()[::-1])
        changed, out = dvc(["status"], proj)
        assert "modified" in out, out
        dvc(["repro", "-q"], proj)
        os.utime(files[len(files) // 3])
        touched, out = dvc(["status"], proj)
        assert "up to date" in out, out
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n, mb = len(files), size / 1e6
    scale = args.project_to / n
    result = {
        "files": n, "mb": round(mb, 1), "mean_kb": round(size / n / 1e3, 2),
        "dvc_startup_s": round(startup, 2),
        "cold_s": round(cold, 2), "warm_s": round(warm, 2), "changed_s": round(changed, 2),
        "touched_s": round(touched, 2), "python_md5_s": round(python_md5, 2),
        "cold_files_per_s": round(n / max(cold - startup, 1e-9)),
        "cold_mb_per_s": round(mb / max(cold - startup, 1e-9), 1),
        "warm_files_per_s": round(n / max(warm - startup, 1e-9)),
        "python_md5_mb_per_s": round(mb / python_md5, 1),
        "projected_files": args.project_to,
        "projected_cold_s": round(startup + (cold - startup) * scale),
        "projected_warm_s": round(startup + (warm - startup) * scale, 1),
        "projected_changed_s": round(startup + (changed - startup) * scale, 1),
    }
    if args.real_kb:
        per_mb = (cold - startup) / mb
        result["projected_cold_s_at_real_kb"] = round(startup + per_mb * args.project_to * args.real_kb / 1e3)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
