"""Benchmark the fine-tuned backbone's options on this machine: eager vs channels_last_3d vs
torch.compile (and both), one training step of I3D (forward + backward + Adam) on the
reference's protocol.

    .venv/bin/python benchmarks/bench_finetune_options.py [--dives 1 --repeats 3 --crop 112]

Each variant builds `aqa.models.backbone.FinetunedI3D` (random weights: the cost of a step does
not depend on their values) and runs `--repeats` timed steps on `--dives` dives of random uint8
frames (3 x 96 x crop x crop -> 9 snippets of 16), after one untimed warm-up step (for compile:
the compilation, reported apart). The loss is the sum of the pooled features and maps, so the
backward pass is I3D's whole. The variants alternate, round by round, so a load change on the
shared machine hits them alike; best and median of each are printed with the load average.
CPU only here: the GPU case (where channels_last_3d and compile are meant to pay off) is unmeasured.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import torch

from aqa.models.backbone import FinetunedI3D

VARIANTS = {"eager": {}, "channels_last": {"channels_last": True}, "compile": {"compile": True},
            "compile+channels_last": {"compile": True, "channels_last": True}}


def make(options: dict, device: torch.device) -> tuple[FinetunedI3D, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = FinetunedI3D(snippet_starts=range(0, 90, 10), snippet_length=16, normalization="imagenet",
                         **options).to(device).train()
    return model, torch.optim.Adam(model.parameters(), lr=1e-4)


def step(model: FinetunedI3D, optimizer: torch.optim.Optimizer, frames: torch.Tensor) -> float:
    t0 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    pooled, maps = model({"frames": frames})
    (pooled.sum() + maps.sum()).backward()
    optimizer.step()
    if frames.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dives", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--crop", type=int, default=112)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    frames = torch.randint(0, 256, (args.dives, 3, 96, args.crop, args.crop), dtype=torch.uint8, device=device)
    built, warmup, times = {}, {}, {name: [] for name in args.variants}
    for name in args.variants:
        built[name] = make(VARIANTS[name], device)
        warmup[name] = step(*built[name], frames)        # compile happens here
    for _ in range(args.repeats):
        for name in args.variants:
            times[name].append(step(*built[name], frames))
    print(f"# fine-tuning step of I3D, {args.dives} dive(s) x 9 snippets of 16x{args.crop}x{args.crop}, "
          f"{device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{datetime.date.today()}, load average {os.getloadavg()[0]:.2f}")
    print("| variant | first step (s, incl. compile) | best (s) | median (s) | vs eager (median) |")
    print("|---|---|---|---|---|")
    base = statistics.median(times["eager"]) if "eager" in times else None
    for name in args.variants:
        med = statistics.median(times[name])
        ratio = f"{base / med:.2f}x" if base else "-"
        print(f"| {name} | {warmup[name]:.1f} | {min(times[name]):.2f} | {med:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
