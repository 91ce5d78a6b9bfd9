"""SAP's T2 mask head alone on the cached Mixed_4f maps and packed masks (issue 9, session 18 M):
the ceiling of a 7 x 7 x 4 map and how fast the head learns (reports/data/stand_in_card.md,
"FineParser's masks").

    PYTHONPATH=src python benchmarks/probe_sap_head.py --project /tmp/m-data ceiling
    PYTHONPATH=src python benchmarks/probe_sap_head.py --project /tmp/m-data train --steps 36 \
        [--bias-prior 0.01] [--seed 0] [--lr-mult 10] [--loss dice]

`ceiling`: the test queries' ground truth average-pooled to tap 4's grid (4 x 7 x 7 per snippet),
as logits, through the same bilinear upsample, sigmoid, per-frame min-max, scored as the evaluate
stage scores SAP: (a) k * (2p - 1) for a few k, (b) the coarse logits fitted per dive to the focal
loss (the best the head's loss can ask of that grid). `train`: tap 4's side branch alone (the
model's init) with Adam at lr 1e-3 on 16 training dives per step (8 queries + 8 exemplars), the
default's 36 steps; per step the focal loss and the mean logit on foreground / background pixels,
the relative change of each parameter, and the test masks' scores every 18 steps (one epoch).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aqa.evaluate import mask_metrics as M
from aqa.models.fineparser_losses import mask_loss
from aqa.models.sap import SAP, SAPConfig, TAPS, frames_to_snippets, snippets_to_frames
from aqa.train.data import load_dive_data
from aqa.train.run import split_rows

STARTS, LENGTH, FRAMES = (0, 10, 20, 30, 40, 50, 60, 70, 80), 16, 96
SHOWN = ("mae", "fbeta_adaptive", "fbeta_max", "smeasure")


def score(pred_frames: list[np.ndarray], gts: list[np.ndarray]) -> dict[str, float]:
    return M.summarise([M.dive_scores(p, g) for p, g in zip(pred_frames, gts)])


def line(summary: dict[str, float]) -> str:
    return ", ".join(f"{k} {summary[k]:.4f}" for k in SHOWN)


def soft_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from probe_sap_ceilings import soft_dice as dice   # beside this file

    return dice(logits, target)


def upsampler() -> torch.nn.ConvTranspose3d:
    return SAP(SAPConfig()).side["4"].upsample_


def to_frames(coarse: torch.Tensor, up) -> torch.Tensor:
    """(S, 4, 7, 7) coarse logits -> (96, 112, 112) probabilities, as predict_masks."""
    fine = up(coarse[:, None])[:, 0]                          # (S, 16, 112, 112)
    return torch.sigmoid(snippets_to_frames(fine[None], STARTS, FRAMES))[0]


def ceiling(data, test, fit_dives: int, fit_steps: int) -> None:
    up = upsampler().requires_grad_(False)
    gts, pooled = [], []
    for r in test:
        gt = data.batch(np.array([r]))["masks"][0]                        # (96, 112, 112) bool
        gts.append(gt.numpy())
        snip = frames_to_snippets(gt[None].float(), STARTS, LENGTH)[0]     # (9, 16, 112, 112)
        pooled.append(F.avg_pool3d(snip[:, None], (4, 16, 16))[:, 0])      # (9, 4, 7, 7)
    ones = up(torch.ones(1, 1, 4, 7, 7))[0, 0]
    print(f"upsample gain on a constant 1: per frame {[round(float(v), 3) for v in ones[:, 56, 56]]}; "
          f"corner {float(ones[8, 0, 0]):.3f}, mean {float(ones.mean()):.3f}")
    print(f"foreground share of the test frames {np.mean([g.mean() for g in gts]):.4f}; "
          f"max pooled cell share {np.mean([float(p.max()) for p in pooled]):.3f} (mean over dives)")
    with torch.no_grad():
        for k in (1, 3, 10, 30):
            s = score([to_frames(k * (2 * p - 1), up).numpy() for p in pooled], gts)
            print(f"ceiling, logits k(2p-1), k={k}: {line(s)}")
        for k in (3, 10):   # logit of the pooled share, scaled: logit(p) rescaled so the map saturates
            s = score([to_frames(k * torch.logit(p.clamp(1e-3, 1 - 1e-3)) / 7, up).numpy() for p in pooled], gts)
            print(f"ceiling, logits k*logit(p)/7, k={k}: {line(s)}")
    fitted = []
    for p, g in list(zip(pooled, gts))[:fit_dives]:   # the upsample's backward is slow on CPU: a subset
        x = torch.logit(p.clamp(0.02, 0.98)).div(2).clone().requires_grad_(True)
        target = frames_to_snippets(torch.from_numpy(g)[None], STARTS, LENGTH)   # (1, 9, 16, H, W)
        opt = torch.optim.Adam([x], lr=0.2)
        for _ in range(fit_steps):
            opt.zero_grad()
            loss = mask_loss([up(x[:, None])[None]], target)
            loss.backward()
            opt.step()
        with torch.no_grad():
            fitted.append(to_frames(x, up).numpy())
    print(f"ceiling, coarse logits fitted to the focal loss ({fit_steps} Adam steps) on the first "
          f"{len(fitted)} test dives: {line(score(fitted, gts[:len(fitted)]))}")
    with torch.no_grad():
        s = score([to_frames(10 * torch.logit(p.clamp(1e-3, 1 - 1e-3)) / 7, up).numpy() for p in pooled[:fit_dives]],
                  gts[:fit_dives])
    print(f"  the same dives, logits 10*logit(p)/7: {line(s)}")
    zeros = [np.zeros(g.shape) for g in gts[:fit_dives]]
    print(f"  the same dives, all background: {line(score(zeros, gts[:fit_dives]))}")


def train(data, pool, test, args) -> None:
    torch.manual_seed(args.seed)
    sap = SAP(SAPConfig())
    head = sap.side["4"]
    if args.bias_prior is not None:
        with torch.no_grad():
            gain = float(head.upsample_(torch.ones(1, 1, 4, 7, 7)).mean())
            head.score_dsn.bias.fill_(float(torch.logit(torch.tensor(args.bias_prior))) / gain)
    if args.side_std is not None:
        with torch.no_grad():
            for conv in (head.side_prep, head.score_dsn):
                conv.weight.normal_(0, args.side_std)
    groups = [{"params": [p for n, p in head.named_parameters() if not n.startswith("upsample")], "lr": args.lr * args.lr_mult},
              {"params": list(head.upsample_.parameters()), "lr": args.lr * args.lr_mult}]
    opt = torch.optim.Adam(groups, lr=args.lr, weight_decay=args.weight_decay)
    start = {n: p.detach().clone() for n, p in head.named_parameters()}
    rng = np.random.default_rng(args.seed)
    test_batches = [data.batch(test[i:i + 8]) for i in range(0, len(test), 8)]

    def evaluate(tag: str) -> None:
        preds, gts = [], []
        with torch.no_grad():
            for b in test_batches:
                logits, _ = head(b["mixed4f"].flatten(0, 1).float())
                logits = logits.view(b["mixed4f"].shape[0], len(STARTS), LENGTH, 112, 112)
                preds += list(torch.sigmoid(snippets_to_frames(logits, STARTS, FRAMES)).numpy())
                gts += list(b["masks"].numpy())
        print(f"  test after {tag}: {line(score(preds, gts))}", flush=True)

    evaluate("0 steps")
    t0 = time.time()
    for step in range(1, args.steps + 1):
        rows = rng.choice(pool, 2 * args.batch, replace=False)
        b = data.batch(rows)
        logits, _ = head(b["mixed4f"].flatten(0, 1).float())                 # (16*9, 1, 16, 112, 112)
        target = frames_to_snippets(b["masks"], STARTS, LENGTH).flatten(0, 1)  # (16*9, 16, 112, 112)
        if args.loss == "dice":   # session 19: soft Dice per frame (probe_sap_ceilings.py: its grid optimum beats both references)
            loss = soft_dice(logits[:, 0], target)
        else:
            loss = mask_loss([logits], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            fg, bg = logits[:, 0][target].mean(), logits[:, 0][~target].mean()
        if step in (1, 2, 5, 10) or step % 6 == 0:
            moved = {n: float((p.detach() - start[n]).norm() / start[n].norm()) for n, p in head.named_parameters()
                     if n != "score_dsn.bias"}   # the bias starts at 0: printed as its value
            print(f"step {step:3d} loss {float(loss):.4f} logit fg {float(fg):+.3f} bg {float(bg):+.3f} "
                  f"gap {float(fg - bg):.3f}; bias {float(head.score_dsn.bias.detach()):+.4f}; rel. change "
                  + " ".join(f"{n.split('.')[0]} {v:.2f}" for n, v in moved.items()), flush=True)
        if step % args.epoch_steps == 0:
            evaluate(f"{step} steps ({time.time() - t0:.0f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("what", choices=("ceiling", "train"))
    ap.add_argument("--steps", type=int, default=36)
    ap.add_argument("--epoch-steps", type=int, default=18)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-mult", type=float, default=1.0)
    ap.add_argument("--loss", choices=("focal", "dice"), default="focal", help="train: the code's focal loss, or soft Dice")
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--bias-prior", type=float, default=None)
    ap.add_argument("--side-std", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit-dives", type=int, default=12)
    ap.add_argument("--fit-steps", type=int, default=60)
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = args.project
    data = load_dive_data(root / "data/processed/annotations/finediving/dives.parquet",
                          root / "data/processed/features/finediving/i3d", torch.device("cpu"),
                          cache_keys=("mixed4f", "masks"))
    pool, _, test = split_rows(data, {"validation_fraction": 0.2, "validation_seed": 0})
    print(f"pool {len(pool)} dives, test {len(test)}")
    if args.what == "ceiling":
        ceiling(data, test, args.fit_dives, args.fit_steps)
    else:
        train(data, pool, test, args)


if __name__ == "__main__":
    main()
