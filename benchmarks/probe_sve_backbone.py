"""How much of a dive's quality the SVE backbones' per-frame features carry (a linear probe).

    .venv/bin/python benchmarks/probe_sve_backbone.py --project /work/clone-r [--every 12]

For a project whose default has run (dives.parquet, the frames of extract_frames, the I3D feature
cache and fetch_i3d's weights), it decodes each dive's protocol frames (every `--every`-th of the
96, the extract_features geometry), computes per-frame features with
  i3d2d      the I3D-2D default (Kinetics I3D, kernels summed over time, to Mixed_4d, 512-d);
  i3d2d_5c   the same up to Mixed_5c (1024-d);
  random     the i3d2d architecture with random weights (what a silent fallback would give);
  i3d2d_imnet  i3d2d fed ImageNet-normalised frames (extract_features' default for TAP's I3D)
             instead of the [-1, 1] its Kinetics weights expect;
and compares them with the cached I3D clip features (pooled, 9 x 1024). Per dive it builds the
mean over the frames and the three steps' means (cut at the annotated transitions, concatenated)
and prints the 5-fold cross-validated Spearman of a ridge probe (probe_features.py's, best of
its lambdas) for the score, the execution (score / DD) and DD, over all dives of the project.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from aqa.features.extract import DiveJob, dive_job, load_views
from aqa.models.sve_backbone import I3D2D, frame_features, load_i3d2d


def _probe_module():
    spec = importlib.util.spec_from_file_location("probe_features", Path(__file__).with_name("probe_features.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def step_means(x: np.ndarray, pos: np.ndarray, b: tuple[int, int]) -> np.ndarray:
    """x (F, C) at protocol positions pos (F,) -> the 3 steps' means concatenated (3C,)."""
    cuts = [(pos < b[0]), (pos >= b[0]) & (pos < b[1]), (pos >= b[1])]
    return np.concatenate([x[c].mean(0) if c.any() else np.zeros(x.shape[1]) for c in cuts])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--dataset", default="finediving")
    ap.add_argument("--every", type=int, default=12, help="use every k-th of the 96 protocol frames")
    ap.add_argument("--limit", type=int, default=None, help="only the first N dives (a quick check)")
    args = ap.parse_args()
    root = args.project
    cfg = yaml.safe_load((root / "params.yaml").read_text())["extract_features"]
    dives = pd.read_parquet(root / "data/processed/annotations" / args.dataset / "dives.parquet")
    dives = dives.iloc[:args.limit] if args.limit else dives
    frames_root = root / "data/interim/frames" / args.dataset
    cache = root / "data/processed/features" / args.dataset / "i3d"
    weights = root / "data/external/i3d/kinetics400_rgb.pt"
    torch.manual_seed(0)
    nets = {"i3d2d": load_i3d2d(weights, "mixed_4d"), "i3d2d_5c": load_i3d2d(weights, "mixed_5c"),
            "random": I3D2D("mixed_4d").eval(), "i3d2d_imnet": load_i3d2d(weights, "mixed_4d")}
    nets["i3d2d_imnet"].normalization = "imagenet"   # the input scaling TAP's I3D gets by default
    pos = np.arange(0, cfg["num_frames"], args.every)
    feats = {k: {"mean": [], "steps": []} for k in (*nets, "i3d_clip")}
    for n, row in enumerate(dives.itertuples()):
        job = dive_job(frames_root, row.video, row.idx, row.start_frame, row.end_frame, cfg["num_frames"])
        job = DiveJob(job.video, job.idx, tuple(job.frame_paths[i] for i in pos))
        views = load_views(job, {**cfg, "flip_view": False})                  # (1, F, 112, 112, 3)
        frames = torch.from_numpy(views[0]).permute(0, 3, 1, 2).contiguous()  # (F, 3, 112, 112)
        b = tuple(int(t) + 1 for t in row.transitions_96)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            for name, net in nets.items():
                x = frame_features(net, frames).float().numpy()                # (F, C)
                feats[name]["mean"].append(x.mean(0))
                feats[name]["steps"].append(step_means(x, pos, b))
        pooled = np.load(cache / row.video / str(row.idx) / "pooled.npy").astype(np.float32)
        pooled = pooled.reshape(-1, *pooled.shape[-2:])[0]                     # (9, 1024): view 0
        feats["i3d_clip"]["mean"].append(pooled.mean(0))
        snip_pos = np.arange(9) * 10 + 8                                       # snippet centres
        feats["i3d_clip"]["steps"].append(step_means(pooled, snip_pos, b))
        if n % 40 == 0:
            print(f"{n}/{len(dives)} dives", file=sys.stderr)
    probe = _probe_module()
    score = dives["dive_score"].to_numpy(float)
    dd = dives["difficulty"].to_numpy(float)
    targets = {"score": score, "execution (score/DD)": score / dd, "DD": dd}
    print(f"{len(dives)} dives of {root}/{args.dataset}; {len(pos)} frames per dive; "
          "5-fold CV Spearman of a ridge probe, best lambda of", probe.LAMBDAS)
    print("| features | per dive | dims | " + " | ".join(targets) + " |")
    print("|---|---|---|" + "---|" * len(targets))
    for name, per in feats.items():
        for kind, rows in per.items():
            x = np.stack(rows)
            cells = [max(probe.cv_spearman(x, y, lam) for lam in probe.LAMBDAS) for y in targets.values()]
            print(f"| {name} | {kind} | {x.shape[1]} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
