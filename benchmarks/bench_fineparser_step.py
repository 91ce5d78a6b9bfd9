"""Time FineParser's training step and evaluation pieces on this CPU, per ablation, and split the
step into its parts (issue 9; the default's budget, docs/METHODS.md "FineParser: training and
evaluation").

    .venv/bin/python benchmarks/bench_fineparser_step.py [--pairs 8] [--repeats 3] [--threads 2]

Inputs are random tensors of the cache's shapes (pooled (B, 9, 1024) and mixed4f (B, 9, 832, 4,
7, 7) in fp16, sve (B, 96, 512), masks (B, 96, 112, 112)): the cost does not depend on the values.
Each row is the best of `--repeats` (the machine is shared; the load average is printed):
  step        forward + loss + backward + Adam of `--pairs` pairs (the training loop's step);
  encode32    model.encode of 32 dives in eval mode (the voting's per-dive work);
  masks32     model.predict_masks of 32 dives (the mask metrics' input);
and for the main model the parts of the step: SAP (trunk top + tap-4 mask head, forward and
backward, query and exemplar snippets packed), the focal loss alone (forward + backward over
2B x 9 x 16 x 112 x 112 logits; fused, and the direct formula under autograd), and the mask metrics of one dive (aqa.evaluate.mask_metrics).
The SAP trunk gets random weights marked as Kinetics-initialised (timing only).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from aqa.evaluate import mask_metrics as M
from aqa.models.fineparser_losses import focal_loss_reference, mask_loss
from aqa.models.registry import build_model
from aqa.models.sap import frames_to_snippets
from aqa.train.loop import make_optimizer

ROWS = {"fineparser (E)": {}, "fp_table3_a": {"ablation": "table3_A"}, "fp_table3_b": {"ablation": "table3_B"},
        "fp_table3_c": {"ablation": "table3_C"}, "fp_table3_d": {"ablation": "table3_D"},
        "fp_sve8": {"ablation": "table4_8"}}


def batch(b: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t1 = torch.randint(20, 40, (b,), generator=g)
    return {"pooled": torch.randn(b, 9, 1024, generator=g).relu().half(),
            "mixed4f": torch.randn(b, 9, 832, 4, 7, 7, generator=g).relu().half(),
            "sve": torch.randn(b, 96, 512, generator=g).relu(),
            "masks": torch.rand(b, 96, 112, 112, generator=g) > 0.95,      # bool, as the loader gives
            "score": torch.rand(b, generator=g) * 100,
            "transitions": torch.stack([t1, t1 + torch.randint(25, 45, (b,), generator=g)], 1)}


def best(fn, repeats: int) -> float:
    fn()   # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def model(**cfg) -> torch.nn.Module:
    torch.manual_seed(0)
    m = build_model("fineparser", **cfg)
    if m.sap is not None:
        m.sap.kinetics_loaded.fill_(1)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    q, e, b32 = batch(args.pairs, 0), batch(args.pairs, 1), batch(32, 2)
    print(f"threads {args.threads}, pairs {args.pairs}, load average {os.getloadavg()[0]:.1f}")
    for name, cfg in ROWS.items():
        m = model(**cfg)
        opt = make_optimizer(m, {"lr": 1e-3, "lr_backbone": 1e-4, "weight_decay": 0.0})

        def step():
            m.train()
            opt.zero_grad()
            total, _ = m.loss(m(q, e), q, e)
            total.backward()
            opt.step()

        s = best(step, args.repeats)
        m.eval()
        with torch.no_grad():
            enc = best(lambda: m.encode(b32, "pred"), args.repeats)
            pm = best(lambda: m.predict_masks(b32), args.repeats) if m.sap is not None else float("nan")
        print(f"{name:16s} step {s:6.2f} s   encode32 {enc:5.2f} s   masks32 {pm:5.2f} s", flush=True)
    m = model()
    m.train()
    x = torch.cat([q["mixed4f"], e["mixed4f"]])
    starts = m.cfg.snippet_starts
    target = torch.cat([frames_to_snippets(q["masks"], starts, 16), frames_to_snippets(e["masks"], starts, 16)])

    def sap():
        m.zero_grad()
        mm, outs = m.sap_pass({"mixed4f": x})
        (mm.sum() + outs[-1].sum()).backward()

    _, outs = m.sap_pass({"mixed4f": x})
    logits = outs[-1].detach().requires_grad_()

    def focal():
        logits.grad = None
        mask_loss([logits], target).backward()

    def focal_direct():   # the direct formula under autograd (before the fused pass)
        logits.grad = None
        focal_loss_reference(logits, target.float()).backward()

    pred = torch.rand(96, 112, 112).numpy()
    gt = np.random.default_rng(0).random((96, 112, 112)) > 0.95
    print(f"parts of the main model's step: SAP fwd+bwd {best(sap, args.repeats):.2f} s, focal fwd+bwd "
          f"{best(focal, args.repeats):.2f} s (direct formula {best(focal_direct, args.repeats):.2f} s); mask metrics per dive {best(lambda: M.dive_scores(pred, gt), 3):.2f} s")


if __name__ == "__main__":
    main()
