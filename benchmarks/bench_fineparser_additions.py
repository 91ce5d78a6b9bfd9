"""Benchmark FineParser's feature-cache additions (aqa.features.additions) on a finished run's data.

    python benchmarks/bench_fineparser_additions.py --root /tmp/b-clone [--dives 16] [--extend]

`--root` is a copy of a finished run of the built-in default (data/interim/frames/finediving,
data/raw/finediving/masks, data/processed/annotations/finediving, data/external/i3d and, for
--extend, data/processed/features/finediving/i3d); nothing of it is written (outputs go to
<root>/bench-*). With params.yaml's extract_features section (this checkout):
  plain / additions  extract_features on the first `--dives` dives into a fresh cache, without and
                     with the additions, alternately twice each (best kept: the machine is shared),
                     so the ratio is measured in one run; disk per dive of every array;
  --extend           the existing 240-dive cache copied, then extended with the additions (the
                     cost an existing checkout pays once: a full I3D pass for mixed4f, the SVE
                     backbone, the masks), pooled / maps bytes checked unchanged; then run again
                     (nothing to compute: the frames and masks checks alone).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from pathlib import Path

import yaml

from aqa.data.annotations import read_dives
from aqa.data.schema import write_parquet_atomic
from aqa.features import extract as X
from aqa.params import load_params

REPO = Path(__file__).resolve().parents[1]
DATASET = "finediving"


def subset_parquet(src: Path, out: Path, n: int) -> Path:
    """The first `n` dives by key, in the contract's schema."""
    import pyarrow.parquet as pq

    table = pq.read_table(src)
    write_parquet_atomic(table.sort_by("key").slice(0, n), out)
    read_dives(out)   # still a dives table
    return out


def timed_extraction(root: Path, parquet: Path, out: Path, cfg: dict, dataset: str | None) -> float:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    X.extract_features(frames_root=root / f"data/interim/frames/{DATASET}", dives_parquet=parquet,
                       weights_path=root / "data/external/i3d/kinetics400_rgb.pt", out_dir=out, cfg=cfg,
                       dataset=dataset, masks_root=root / f"data/raw/{DATASET}/masks")
    return time.perf_counter() - started


def disk_per_dive(cache: Path) -> dict[str, float]:
    sizes: dict[str, list[int]] = {}
    for path in cache.glob("*/*/*"):
        if path.parent.name.startswith("."):
            continue
        sizes.setdefault(path.name, []).append(path.stat().st_size)
    return {name: sum(v) / len(v) for name, v in sorted(sizes.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--dives", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--extend", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load_params(REPO / "params.yaml", "extract_features")
    root = args.root.resolve()
    parquet = subset_parquet(root / f"data/processed/annotations/{DATASET}/dives.parquet",
                             root / "bench-dives.parquet", args.dives)
    best = {"plain": float("inf"), "additions": float("inf")}
    for _ in range(args.repeats):
        best["plain"] = min(best["plain"], timed_extraction(root, parquet, root / "bench-plain", cfg, None))
        best["additions"] = min(best["additions"], timed_extraction(root, parquet, root / "bench-add", cfg, DATASET))
    result = {"dives": args.dives, "load_average_1min": os.getloadavg()[0], "torch_threads": __import__("torch").get_num_threads(),
              "plain_s_per_dive": best["plain"] / args.dives, "additions_s_per_dive": best["additions"] / args.dives,
              "ratio": best["additions"] / best["plain"], "bytes_per_dive": disk_per_dive(root / "bench-add")}
    if args.extend:
        cache = root / "bench-extend"
        shutil.rmtree(cache, ignore_errors=True)
        shutil.copytree(root / f"data/processed/features/{DATASET}/i3d", cache)
        base = {p: p.read_bytes() for p in cache.rglob("*.npy")}
        started = time.perf_counter()
        X.extract_features(frames_root=root / f"data/interim/frames/{DATASET}",
                           dives_parquet=root / f"data/processed/annotations/{DATASET}/dives.parquet",
                           weights_path=root / "data/external/i3d/kinetics400_rgb.pt", out_dir=cache, cfg=cfg,
                           dataset=DATASET, masks_root=root / f"data/raw/{DATASET}/masks")
        result["extend_240_s"] = time.perf_counter() - started
        result["extend_base_unchanged"] = all(p.read_bytes() == b for p, b in base.items())
        result["extend_load_average_1min"] = os.getloadavg()[0]
        started = time.perf_counter()   # again: nothing to compute, every dive's frames and masks checked
        X.extract_features(frames_root=root / f"data/interim/frames/{DATASET}",
                           dives_parquet=root / f"data/processed/annotations/{DATASET}/dives.parquet",
                           weights_path=root / "data/external/i3d/kinetics400_rgb.pt", out_dir=cache, cfg=cfg,
                           dataset=DATASET, masks_root=root / f"data/raw/{DATASET}/masks")
        result["noop_240_s"] = time.perf_counter() - started
    print(yaml.safe_dump(result, sort_keys=False))


if __name__ == "__main__":
    main()
