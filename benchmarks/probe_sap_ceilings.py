"""The ceilings of SAP's mask outputs at every tap's grid and for several per-pixel losses, on the
default's test dives (issue 9, session 19 K; reports/data/stand_in_card.md "What each tier could
reach"; the helpers are aqa.evaluate.mask_ceilings).

    PYTHONPATH=src python benchmarks/probe_sap_ceilings.py --project /tmp/k-data rules
    PYTHONPATH=src python benchmarks/probe_sap_ceilings.py --project /tmp/k-data fit \
        --taps 4 1 --losses focal bce --dives 6 --steps 60

`rules`: for each tap (1..4: T1's side outputs; 4 is also T2's only output) the test queries' ground
truth pooled to the tap's grid, one logit per cell, through the tap's upsample at the model's init
(bilinear), overlapping snippets averaged, sigmoid, scored as the evaluate stage scores SAP
(per-frame min-max, aqa.evaluate.mask_metrics): (a) the logit k (2p - 1) of the cell's share p, (b)
each per-pixel loss's optimum for a cell of share p (closed form per cell). Logits are given as
the logit of an interior pixel (the coarse value times the upsample's gain 2); pure cells saturate
at +-10. `fit`: the coarse logits fitted per dive by Adam to the loss through the upsample (the
cells then interact through the blur), started from the closed form: what (b) ignores; also soft
Dice per frame ("dice") and the L1 distance of the probabilities ("l1", the MAE before the min-max),
which have no per-cell formula here (both start from BCE's).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from aqa.evaluate import mask_ceilings as C
from aqa.evaluate import mask_metrics as M
from aqa.models.fineparser_losses import mask_loss
from aqa.models.sap import frames_to_snippets
from aqa.train.data import load_dive_data

STARTS, LENGTH, FRAMES = (0, 10, 20, 30, 40, 50, 60, 70, 80), 16, 96
SHOWN = ("mae", "fbeta_adaptive", "fbeta_max", "smeasure")


def line(scores: list) -> str:
    s = M.summarise(scores)
    return ", ".join(f"{k} {s[k]:.4f}" for k in SHOWN)


def test_masks(project: Path, dives: int | None) -> list[torch.Tensor]:
    """The test queries' ground truth (96, 112, 112) bool, in the evaluate stage's order."""
    data = load_dive_data(project / "data/processed/annotations/finediving/dives.parquet",
                          project / "data/processed/features/finediving/i3d", torch.device("cpu"),
                          cache_keys=("masks",))
    test = data.indices("test")[:dives]
    return [data.batch(np.array([r]))["masks"][0] >= 0.5 for r in test]


def references(gts) -> None:
    zeros = [M.dive_scores(np.zeros(g.shape), g.numpy()) for g in gts]
    print(f"all background: {line(zeros)}", flush=True)


def cells(tap: int) -> int:
    t, h, w = C.cell_size(tap)
    return t * h * w


def rules(gts, taps, saturate: float, ks, thresholds, losses: bool = True) -> None:
    print(f"{len(gts)} test dives; foreground share {np.mean([float(g.float().mean()) for g in gts]):.4f}")
    references(gts)
    for tap in taps:
        up = C.upsampler(tap)
        shares = [C.pool_to_grid(frames_to_snippets(g[None], STARTS, LENGTH)[0], tap) for g in gts]
        gain = C.interior_gain(up, shares[0].shape[1:])
        print(f"tap {tap}: grid {tuple(shares[0].shape[1:])} per snippet, cell {C.cell_size(tap)}, "
              f"upsample gain {gain:g}", flush=True)
        maps = {f"k(2p-1), k={k:g}": (lambda p, k=k: k * (2 * p - 1)) for k in ks}
        maps.update({f"binary, share >= {t:g}": (lambda p, t=t: saturate * (2 * (p >= t).float() - 1))
                     for t in thresholds})
        for name, (gamma, alpha) in (C.LOSSES.items() if losses else ()):
            table = C.optimum_logit(np.arange(cells(tap) + 1) / cells(tap), gamma, alpha, saturate)
            maps[f"{name} optimum"] = (lambda p, t=table, n=cells(tap): torch.from_numpy(
                t[np.rint(p.numpy() * n).astype(np.int64)]).float())
            probe = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9]
            print(f"  {name} optimum probability at share {probe}: "
                  f"{np.round(1 / (1 + np.exp(-C.optimum_logit(probe, gamma, alpha, saturate))), 3).tolist()}")
        for name, rule in maps.items():
            t0 = time.time()
            scores = [M.dive_scores(C.coarse_to_frames(rule(p) / gain, up, STARTS, FRAMES).numpy(), g.numpy())
                      for p, g in zip(shares, gts)]
            print(f"  tap {tap} {name}: {line(scores)} ({time.time() - t0:.0f} s)", flush=True)


def soft_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - the soft Dice per frame (over H, W), mean over frames."""
    s, y = torch.sigmoid(logits), target.float()
    inter = (s * y).sum((-2, -1))
    return (1 - 2 * inter / (s.sum((-2, -1)) + y.sum((-2, -1)) + 1e-6)).mean()


def fit(gts, taps, losses, steps: int, lr: float, saturate: float) -> None:
    references(gts)
    for tap in taps:
        up = C.upsampler(tap)
        for name in losses:
            gamma, alpha = C.LOSSES.get(name, (0.0, None))
            t0, before, after = time.time(), [], []
            for g in gts:
                target = frames_to_snippets(g[None], STARTS, LENGTH)[0]            # (9, 16, H, W)
                p = C.pool_to_grid(target, tap)
                gain = C.interior_gain(up, p.shape[1:])
                start = torch.from_numpy(C.optimum_logit(p.numpy(), gamma, alpha, saturate)).float() / gain
                before.append(M.dive_scores(C.coarse_to_frames(start, up, STARTS, FRAMES).numpy(), g.numpy()))
                x = start.clone().requires_grad_(True)
                opt = torch.optim.Adam([x], lr=lr)
                for _ in range(steps):
                    logits = up(x[:, None])                                        # (9, 1, 16, H, W)
                    if name == "dice":
                        loss = soft_dice(logits[:, 0], target)
                    elif name == "l1":      # the MAE itself, before the min-max
                        loss = (torch.sigmoid(logits[:, 0]) - target.float()).abs().mean()
                    else:
                        loss = mask_loss([logits], target, gamma=gamma, alpha=alpha)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                after.append(M.dive_scores(C.coarse_to_frames(x.detach(), up, STARTS, FRAMES).numpy(), g.numpy()))
            print(f"tap {tap} {name}: closed form {line(before)}\n  fitted ({steps} Adam steps, lr {lr}): "
                  f"{line(after)} ({time.time() - t0:.0f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("what", choices=("rules", "fit"))
    ap.add_argument("--taps", type=int, nargs="+", default=[4, 3, 2, 1])
    ap.add_argument("--losses", nargs="+", default=["focal", "bce"])
    ap.add_argument("--dives", type=int, default=None)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--saturate", type=float, default=10.0, help="a pure cell's logit (interior pixel)")
    ap.add_argument("--ks", type=float, nargs="+", default=[3, 10, 30], help="rules: the k of k (2p - 1)")
    ap.add_argument("--thresholds", type=float, nargs="*", default=[],
                    help="rules: also the binary maps +-saturate at share >= t")
    ap.add_argument("--no-losses", action="store_true", help="rules: only the k and threshold rules")
    args = ap.parse_args()
    torch.set_num_threads(1)
    gts = test_masks(args.project, args.dives)
    if args.what == "rules":
        rules(gts, args.taps, args.saturate, args.ks, args.thresholds, not args.no_losses)
    else:
        fit(gts, args.taps, args.losses, args.steps, args.lr, args.saturate)


if __name__ == "__main__":
    main()
