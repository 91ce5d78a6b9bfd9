"""Per-stage wall-clock split of a whole `dvc repro` (or `make repro`) run, from the Snakemake logs
it left in <project>/.snakemake/log (docs/BENCHMARKS.md "Whole pipeline").

    python benchmarks/stage_split.py <project> [--since 2026-12-06T06:30:00] [--end <ISO time>]

Every DVC stage runs one Snakemake, whose log file is named by its start time; a stage's wall time is
taken from its start to the start of the next one (so DVC's hashing and lock writing after a stage
count with it); the last stage ends at --end (e.g. when `make` returned) or at its log's mtime.
Prints one row per stage and one per group (rule and dataset), in the order they ran.
"""

from __future__ import annotations

import argparse
import re
from collections import OrderedDict
from datetime import datetime
from pathlib import Path

NAME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{6}\.\d+)\.snakemake\.log$")
COMMAND = re.compile(r"^\s*Command: .* -- (\S+)\s*$", re.M)


def stage_of(target: str) -> tuple[str, str]:
    """(group, item) of a Snakemake target path, e.g. models/finediving/tsa-dn/.train.done ->
    ("train finediving", "tsa-dn")."""
    parts = Path(target).parts
    if parts[0] == "models":
        return f"train {parts[1]}", parts[2]
    if parts[:2] == ("reports", "metrics"):
        return f"evaluate {parts[2]}", Path(parts[3]).stem
    if parts[:2] == ("data", "raw"):
        return f"synthesize_videos {parts[2]}", ""
    if parts[:2] == ("data", "interim"):
        return f"extract_frames {parts[3]}", ""
    if parts[:3] == ("data", "processed", "annotations"):
        return f"convert_annotations {parts[3]}", ""
    if parts[:3] == ("data", "processed", "features"):
        return f"extract_features {parts[3]}", ""
    if parts[:2] == ("data", "external"):
        return "fetch_i3d", ""
    return " ".join(parts[:2]), ""


def runs(log_dir: Path, since: datetime | None) -> list[tuple[datetime, str, Path]]:
    out = []
    for path in log_dir.glob("*.snakemake.log"):
        m = NAME.search(path.name)
        if not m:
            continue
        start = datetime.strptime(m.group(1), "%Y-%m-%dT%H%M%S.%f")
        if since and start < since:
            continue
        cmd = COMMAND.search(path.read_text(errors="replace"))
        out.append((start, cmd.group(1) if cmd else "?", path))
    return sorted(out)


def fmt(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("project", type=Path)
    ap.add_argument("--since", type=datetime.fromisoformat, help="ignore Snakemake logs started before this time")
    ap.add_argument("--end", type=datetime.fromisoformat, help="when the run ended; later logs are ignored (default: the last log's mtime)")
    args = ap.parse_args()
    found = [r for r in runs(args.project / ".snakemake" / "log", args.since) if not args.end or r[0] < args.end]
    if not found:
        raise SystemExit(f"{args.project}/.snakemake/log: no Snakemake logs (after --since)")
    end = args.end or datetime.fromtimestamp(found[-1][2].stat().st_mtime)
    groups: OrderedDict[str, list[tuple[str, float]]] = OrderedDict()
    print("| stage | item | start | wall |\n|---|---|---|---:|")
    for i, (start, target, _) in enumerate(found):
        stop = found[i + 1][0] if i + 1 < len(found) else end
        group, item = stage_of(target)
        seconds = (stop - start).total_seconds()
        groups.setdefault(group, []).append((item, seconds))
        print(f"| {group} | {item} | {start:%H:%M:%S} | {fmt(seconds)} |")
    print("\n| group | stages | wall | each |\n|---|---:|---:|---|")
    for group, items in groups.items():
        total = sum(s for _, s in items)
        each = ", ".join(f"{n or group.split()[0]} {round(s)} s" for n, s in items)
        print(f"| {group} | {len(items)} | {fmt(total)} | {each} |")
    span = (end - found[0][0]).total_seconds()
    print(f"\nfirst Snakemake start {found[0][0]:%H:%M:%S}, end {end:%H:%M:%S}: {fmt(span)} over {len(found)} stages")


if __name__ == "__main__":
    main()
