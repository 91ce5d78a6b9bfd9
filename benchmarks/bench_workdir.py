"""Cost of aqa.workdir on the default's outputs (docs/BENCHMARKS.md).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_workdir.py <built clone> <scratch folder>

The scratch folder gets the clone's dvc.lock and copies of the DVC cache objects of its feature
and model outputs (the clone is only read); then start() (dvc.lock read, copy from DVC's cache)
and publish() (rename) run for every extract_features / train / train_mtl_aqa output, as a re-run
of each of those stages does after DVC deleted its output; last, the same starts with an empty
DVC cache (a fresh clone, where dvc.lock is committed but nothing was pulled) and empty output
folders (Snakemake creates the folder of the job's flag before the command starts)."""
import json
import os
import shutil
import sys
import time
from pathlib import Path

import yaml

from aqa.workdir import publish, start

STAGES = ("extract_features", "train", "train_mtl_aqa")


def objects(clone: Path, md5: str) -> list[str]:
    """The .dir object of an output and the objects of its files."""
    listing = json.loads((clone / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).read_text())
    return [md5] + [e["md5"] for e in listing]


def main(clone: Path, root: Path) -> None:
    lock = yaml.load((clone / "dvc.lock").read_text(), Loader=yaml.CSafeLoader)
    outs = {o["path"]: o["md5"] for name, stage in lock["stages"].items() if name.split("@")[0] in STAGES
            for o in stage["outs"]}
    root.mkdir(parents=True)
    shutil.copy(clone / "dvc.lock", root / "dvc.lock")
    for md5 in outs.values():
        for m in objects(clone, md5):
            dst = root / ".dvc/cache/files/md5" / m[:2] / m[2:]
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(clone / ".dvc/cache/files/md5" / m[:2] / m[2:], dst)
    os.chdir(root)
    times, size = {}, 0
    for out in sorted(outs):
        work = Path(".aqa/work") / out
        t0 = time.perf_counter()
        start(work, Path(out))
        t1 = time.perf_counter()
        size += sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
        t2 = time.perf_counter()
        publish(work, Path(out))
        times[out] = (t1 - t0, time.perf_counter() - t2)
    features = [o for o in outs if o.startswith("data/")]
    print(f"{len(outs)} outputs ({len(features)} feature caches), {size / 1e6:.0f} MB copied from DVC's cache")
    print(f"start (dvc.lock read + copy): {sum(a for a, _ in times.values()):.1f} s in all, "
          f"publish (rename): {sum(b for _, b in times.values()):.3f} s in all")
    slowest = max((o for o in outs if o not in features), key=lambda k: times[k][0])
    for out in features + [slowest]:
        print(f"  {out}: start {times[out][0]:.2f} s")
    shutil.rmtree(".dvc")             # a fresh clone: dvc.lock lists every output, DVC's cache is empty
    for out in outs:
        shutil.rmtree(out)
        Path(out).mkdir()   # as under `dvc repro`: Snakemake creates the folder of the job's flag
    t0 = time.perf_counter()
    for out in sorted(outs):
        assert start(Path(".aqa/work") / out, Path(out)) == "nothing"
    print(f"fresh clone (empty DVC cache): {len(outs)} starts in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
