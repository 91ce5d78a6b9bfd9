"""Benchmark the SVE backbones per frame against the I3D per snippet, on this CPU.

    .venv/bin/python benchmarks/bench_sve_backbone.py [--repeats 3] [--frames 96]

FineParser's cache needs the SVE backbone's features of all 96 protocol frames of a dive (per
view), beside the I3D's 9 snippets (../shared/docs/FINEPARSER.md 8.2). For one dive's worth of
input at 112 x 112 it times, alternately and `--repeats` times each (best kept: the machine is
shared), in float32 and under bfloat16 autocast (what extract_features uses on this CPU):
  i3d        InceptionI3d.features on 9 snippets of 16 frames (the cache's pass, with Mixed_4f);
  i3d2d      the I3D-2D default (aqa.models.sve_backbone, up to Mixed_4d, 512-d) on 96 frames;
  i3d2d_5c   the same network up to Mixed_5c (1024-d);
  resnet34   torchvision's resnet34 trunk (conv1..layer4) on 96 frames, the paper's backbone.
GFLOP per item are counted once with torch.utils.flop_counter. Random weights: the cost of a
forward does not depend on the values (the features themselves: benchmarks/probe_sve_backbone.py).
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from aqa.models.i3d import InceptionI3d
from aqa.models.sve_backbone import I3D2D, ResNetTrunk


def gflop(fn, x) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(x)
    return counter.get_total_flops() / 1e9


def best_times(nets: dict, repeats: int, bf16: bool) -> dict[str, float]:
    """Best wall time of one dive per network, the networks alternating within each repeat (so a
    change of the shared machine's load hits them all alike)."""
    best = {name: float("inf") for name in nets}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for fn, x, *_ in nets.values():
            fn(x)  # warm-up (oneDNN primitive creation)
        for _ in range(repeats):
            for name, (fn, x, *_) in nets.items():
                t0 = time.perf_counter()
                fn(x)
                best[name] = min(best[name], time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--frames", type=int, default=96, help="frames per dive (the protocol's 96)")
    args = ap.parse_args()
    torch.manual_seed(0)
    i3d = InceptionI3d().eval()
    nets = {
        "i3d": (lambda x: i3d.features(x), torch.randn(9, 3, 16, 112, 112), "snippet", 9),
        "i3d2d": (I3D2D("mixed_4d").eval(), torch.randn(args.frames, 3, 112, 112), "frame", args.frames),
        "i3d2d_5c": (I3D2D("mixed_5c").eval(), torch.randn(args.frames, 3, 112, 112), "frame", args.frames),
        "resnet34": (ResNetTrunk(torchvision.models.resnet34(weights=None)).eval(),
                     torch.randn(args.frames, 3, 112, 112), "frame", args.frames),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; one dive = 9 snippets / {args.frames} frames")
    print("| network | GFLOP per item | GFLOP per dive | s per dive fp32 | s per dive bf16 | x I3D (bf16) |")
    print("|---|---|---|---|---|---|")
    t32, t16 = best_times(nets, args.repeats, False), best_times(nets, args.repeats, True)
    for name, (fn, x, item, n) in nets.items():
        g = gflop(fn, x[:1])
        print(f"| {name} | {g:.2f} per {item} | {g * n:.1f} | {t32[name]:.2f} | {t16[name]:.2f} | "
              f"{t16[name] / t16['i3d']:.2f} |")


if __name__ == "__main__":
    main()
