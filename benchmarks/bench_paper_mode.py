"""What paper mode costs: training throughput on this CPU (cached and fine-tuned path), FLOPs per
training pair of every method on both paths, a projection of the paper protocol's hours on a GPU
from those FLOPs, and how many loader workers keep that GPU fed.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_paper_mode.py --json /tmp/bench_paper_mode.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_paper_mode.py --clock cpu   # on a busy machine

Parts (each prints the load average around it; the machine is shared, so compare ratios within
one run):
- cached: `train_epoch` of the existing loop for every method on a random feature cache with the
  real shapes (benchmarks/bench_train_eval.make_data, --dives dives), params' batch size; the
  epoch's FLOPs counted by torch.utils.flop_counter.FlopCounterMode (convolutions and matrix
  products, forward and backward; not the elementwise work nor Adam).
- finetune: the fine-tuned path's training step, built here from the package's parts (the
  method's model class on features computed by aqa.models.i3d.InceptionI3d from frames):
  I3D forward + backward on the protocol's 9 snippets x 16 frames x 112 x 112 of the query and of
  the exemplar, BatchNorm of I3D in eval mode as the reference, the head on I3D's pooled features
  and Mixed_5c maps, the loss, Adam with the two learning rates. Timed for --finetune-methods
  with --finetune-pairs pairs per step; FLOPs for every method: I3D counted on the meta device
  (shapes only, exact), the head on real tensors with gradients to its inputs.
- loader: one process (1 thread), real rendered frames at the release's size (456 x 256, the
  stand-in renderer + extract_frames, JPEG quality 90): a dive's 96 protocol frames decoded,
  squeezed to 200 x 112 (PIL bilinear), flipped with p = 0.5, cropped 112 x 112 at a random
  vertical offset in 0..88; with and without the float conversion + ImageNet normalisation; and,
  for comparison, flip + crop alone from frames squeezed once to a 200 x 112 uint8 array.
- projection: FineDiving's paper protocol (2251 training dives, 749 test dives, 200 epochs for
  TSA and its ablations and for CoRe, 100 for I3D+MLP, USDL, MUSDL, the sources' settings;
  params/paper.yaml) at an assumed sustained GPU throughput (--gpu-name, --gpu-tflops) on one
  GPU and on --gpus GPUs at --scaling efficiency: training FLOPs per epoch plus the per-epoch
  evaluation (each pool and test dive encoded once by I3D, forward only; heads' evaluation left
  out, < 1 % of it). A projection from FLOPs, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

PAIRWISE = ("fr", "fr_asym", "fr_dn", "fsr", "tsa", "core")
DIRECT = ("i3d_mlp", "usdl", "musdl")
METHODS = PAIRWISE + DIRECT
SNIPPETS, SNIPPET_LEN, CROP, RESIZE = 9, 16, 112, (200, 112)
# FineDiving's paper protocol (Xu et al. 2022; the sources' epochs of the baselines, params/paper.yaml)
TRAIN_DIVES, TEST_DIVES = 2251, 749
EPOCHS = {m: 200 for m in PAIRWISE} | {m: 100 for m in DIRECT}
BATCH = {m: 8 for m in PAIRWISE} | {m: 4 for m in DIRECT} | {"core": 2}


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


CLOCK = {"name": "wall"}   # --clock cpu: the process's CPU time, steadier on a shared machine


def best_time(fn, repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls, by the clock --clock names (with 1 thread the
    process's CPU time is the work itself; a busy neighbour stretches only the wall time)."""
    clock = time.process_time if CLOCK["name"] == "cpu" else time.perf_counter
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def train_params() -> tuple[dict, dict]:
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    return {**params["train"], "device": "cpu", "amp": False}, params["evaluate"]


def seed_run(method: str, train_cfg: dict, eval_cfg: dict, num_actions: int):
    from aqa.train.loop import SeedRun

    kwargs = {"num_actions": num_actions} if method == "fr_dn" else {}
    return SeedRun(variant=f"{method}-dn", method=method, model_kwargs=kwargs, mode="dn", seed=0,
                   train_cfg={**train_cfg, "batch_size": BATCH[method]}, eval_cfg=eval_cfg)


def build_model(method: str, data, pool, train_cfg, eval_cfg):
    """The method's model as the train stage builds it (CoRe's group edges from the pool)."""
    from aqa.models.registry import variant_settings
    from aqa.train.loop import build

    run = seed_run(method, train_cfg, eval_cfg, len(data.action_names))
    dives = data.dives.iloc[pool]
    implied = variant_settings(method, "dn", score=dives["dive_score"].to_numpy(np.float64),
                               difficulty=dives["difficulty"].to_numpy(np.float64),
                               action=dives["action_type"].astype(str).to_numpy(), config=dict(run.model_kwargs))
    run.model_kwargs.update(implied)
    torch.manual_seed(0)
    return run, build(run.config(), torch.device("cpu"))


# --------------------------------------------------------------------------- cached path


def cached(args, data, pool, train_cfg, eval_cfg) -> dict:
    from aqa.train.loop import make_optimizer, train_epoch

    out = {}
    print(f"cached path: {pool.size} training dives per epoch, {load()}", flush=True)
    for method in METHODS:
        run, model = build_model(method, data, pool, train_cfg, eval_cfg)
        opt = make_optimizer(model, run.train_cfg)
        scaler = torch.amp.GradScaler("cuda", enabled=False)
        epoch = lambda: train_epoch(model, opt, scaler, data, pool, run, 0)  # noqa: E731
        seconds = best_time(epoch, args.repeats)
        per_pair = flops(epoch) / pool.size
        out[method] = {"seconds_per_epoch": seconds, "pairs_per_s": pool.size / seconds, "flops_per_pair": per_pair,
                       "batch_size": BATCH[method]}
        print(f"  {method}: {pool.size / seconds:.1f} {'pairs' if method in PAIRWISE else 'dives'}/s, "
              f"{per_pair / 1e9:.4f} GFLOP per {'pair' if method in PAIRWISE else 'dive'} (train step), {load()}",
              flush=True)
    return out


# --------------------------------------------------------------------------- fine-tuned path


def frozen_bn_i3d(device: str | torch.device = "cpu"):
    """Kinetics-shaped I3D (random weights: the cost does not depend on them) in train mode with
    its BatchNorm layers in eval mode, as the reference fine-tunes it."""
    from aqa.models.i3d import InceptionI3d

    with torch.device(device):
        i3d = InceptionI3d()
    i3d.train()
    for m in i3d.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    return i3d


def i3d_features(i3d, clips: torch.Tensor, dives: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(dives * 9, 3, 16, 112, 112) -> pooled (dives, 9, 1024), maps (dives, 9, 1024, 4, 4): the
    cache's layout (Mixed_5c averaged over its 2 time steps), computed with gradients."""
    pooled, fmap = i3d.features(clips)
    maps = fmap.mean(dim=2)
    return pooled.view(dives, SNIPPETS, -1), maps.view(dives, SNIPPETS, *maps.shape[1:])


def i3d_flops() -> dict:
    """Per dive (9 snippets), exact from shapes on the meta device."""
    i3d = frozen_bn_i3d("meta")
    x = torch.empty(SNIPPETS, 3, SNIPPET_LEN, CROP, CROP, device="meta")

    def fwd_bwd():
        p, m = i3d_features(i3d, x, 1)
        (p.sum() + m.sum()).backward()

    def fwd():
        with torch.no_grad():
            i3d_features(i3d, x, 1)
    return {"train_per_dive": flops(fwd_bwd), "eval_per_dive": flops(fwd)}


def finetune_step(model, i3d, opt, q, e, clips, pairwise: bool, transitions="gt") -> None:
    """One fine-tuned training step: I3D on the frames of every dive of the batch, the head, loss,
    backward into I3D, Adam."""
    b = q["score"].shape[0]
    n = 2 * b if pairwise else b
    pooled, maps = i3d_features(i3d, clips, n)
    q = {**q, "pooled": pooled[:b], "maps": maps[:b]}
    opt.zero_grad(set_to_none=True)
    if pairwise:
        e = {**e, "pooled": pooled[b:], "maps": maps[b:]}
        out = model(q, e, transitions=transitions)
        total, _ = model.loss(out, q, e)
    else:
        out = model(q)
        total, _ = model.loss(out, q)
    total.backward()
    opt.step()


def head_flops(model, q, e, pairwise: bool) -> int:
    """The head's FLOPs of one training step with gradients to its inputs (as under a trainable I3D)."""
    def step():
        qq = {**q, "pooled": q["pooled"].clone().requires_grad_(), "maps": q["maps"].clone().requires_grad_()}
        if pairwise:
            ee = {**e, "pooled": e["pooled"].clone().requires_grad_(), "maps": e["maps"].clone().requires_grad_()}
            total, _ = model.loss(model(qq, ee, transitions="gt"), qq, ee)
        else:
            total, _ = model.loss(model(qq), qq)
        total.backward()
    model.train()
    return flops(step)


def finetune(args, data, pool, train_cfg, eval_cfg) -> dict:
    from aqa.train.exemplars import sample_train_exemplars

    per_dive = i3d_flops()
    out = {"i3d": per_dive, "methods": {}}
    print(f"fine-tuned path: I3D per dive (9 x 16 x 112 x 112): {per_dive['train_per_dive'] / 1e9:.1f} GFLOP "
          f"forward + backward, {per_dive['eval_per_dive'] / 1e9:.1f} GFLOP forward", flush=True)
    rng = np.random.default_rng(0)
    actions = data.action.cpu().numpy()[pool]
    exemplar = sample_train_exemplars(actions, "dn", rng)
    for method in METHODS:
        pairwise = method in PAIRWISE
        b = 2                       # FLOPs are per pair / dive; 2 keeps BatchNorm of the heads defined
        rows = pool[:b]
        q = data.batch(rows)
        e = data.batch(pool[exemplar[:b]]) if pairwise else None
        run, model = build_model(method, data, pool, train_cfg, eval_cfg)
        head = head_flops(model, q, e, pairwise) / b
        dives = 2 if pairwise else 1
        total = dives * per_dive["train_per_dive"] + head
        out["methods"][method] = {"head_flops_per_pair": head, "flops_per_pair": total, "dives_per_sample": dives}
        print(f"  {method}: {total / 1e9:.1f} GFLOP per {'pair' if pairwise else 'dive'} "
              f"(head {head / 1e9:.4f})", flush=True)

    for method in args.finetune_methods:  # CPU time of real steps
        pairwise = method in PAIRWISE
        b = args.finetune_pairs
        run, model = build_model(method, data, pool, train_cfg, eval_cfg)
        i3d = frozen_bn_i3d()
        opt = torch.optim.Adam([{"params": model.parameters(), "lr": train_cfg["lr"]},
                                {"params": i3d.parameters(), "lr": train_cfg["lr_backbone"]}])
        q = data.batch(pool[:b])
        e = data.batch(pool[exemplar[:b]]) if pairwise else None
        n = (2 if pairwise else 1) * b
        clips = torch.randn(n * SNIPPETS, 3, SNIPPET_LEN, CROP, CROP)
        model.train()
        print(f"  timing {method}: {b} pair(s) per step, {load()}", flush=True)
        seconds = best_time(lambda: finetune_step(model, i3d, opt, q, e, clips, pairwise), args.repeats)
        fwd = best_time(lambda: i3d_features(i3d, clips, n), 1)
        rate = b / seconds
        out["methods"][method].update(seconds_per_step=seconds, pairs_per_s=rate, step_pairs=b,
                                      i3d_forward_seconds=fwd,
                                      cpu_gflops=out["methods"][method]["flops_per_pair"] * rate / 1e9)
        print(f"  {method}: {seconds:.2f} s per step of {b} -> {rate:.4f} pairs/s "
              f"({out['methods'][method]['cpu_gflops']:.1f} GFLOP/s); I3D forward alone {fwd:.2f} s, {load()}",
              flush=True)
    return out


# --------------------------------------------------------------------------- loader


def render_frames(workdir: Path) -> Path:
    """One stand-in video at the release's size (params.yaml's rendering) cut into JPEG frames."""
    import yaml

    frames = workdir / "frames"
    if any(frames.rglob("*.jpg")):
        return frames
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["synthesize_videos"]["finediving"].update(num_videos=1, dives_per_video=2)
    p["synthesize_videos"]["workers"] = 1
    p["datasets"] = {"run": ["finediving"], "variants": {"finediving": ["fr"], "mtl_aqa": []}}
    params = workdir / "params.yaml"
    params.write_text(yaml.safe_dump(p, sort_keys=False))
    aqa = str(Path(sys.executable).with_name("aqa"))
    raw = workdir / "raw"
    subprocess.run([aqa, "synthesize-videos", "--params", str(params), "--dataset", "finediving", "--videos",
                    str(raw / "videos"), "--annotations", str(raw / "annotations"), "--masks", str(raw / "masks")],
                   check=True)
    subprocess.run([aqa, "extract-frames", "--params", str(params), "--dataset", "finediving",
                    *sum((["--video", str(v)] for v in sorted((raw / "videos").glob("*.mp4"))), []),
                    "--annotations", str(raw / "annotations"), "--out", str(frames)], check=True)
    return frames


def augment_dive(paths, rng: np.random.Generator, normalise: bool):
    """The reference's training transform for one dive (one draw for all its frames): the 200 x 112
    squeeze, horizontal flip with p = 0.5, a 112 x 112 crop at a vertical offset in 0..88."""
    from aqa.features import transforms as T

    flip, top = bool(rng.random() < 0.5), int(rng.integers(0, RESIZE[0] - CROP + 1))
    frames = np.stack([T.load_resized(p, RESIZE) for p in paths])       # (96, 200, 112, 3)
    frames = frames[:, top:top + CROP, ::-1] if flip else frames[:, top:top + CROP]
    clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)  # (3, 96, 112, 112) uint8
    return T.normalize(clip, "imagenet") if normalise else clip


def loader(args) -> dict:
    from aqa.data.protocol import sample_frame_numbers

    torch.set_num_threads(1)
    frames = render_frames(args.workdir)
    dive = sorted(d for d in frames.glob("*/*") if d.is_dir())[0]
    files = sorted(dive.glob("*.jpg"))
    numbers = [int(f.stem) for f in files]
    wanted = sample_frame_numbers(min(numbers), max(numbers), 96)
    paths = [dive / f"{int(n):05d}.jpg" for n in wanted]
    from PIL import Image

    with Image.open(paths[0]) as img:
        size = img.size
    rng = np.random.default_rng(0)
    out = {"frame_size": list(size), "frames_per_dive": len(paths),
           "mean_jpeg_bytes": float(np.mean([p.stat().st_size for p in paths]))}
    print(f"loader: {dive.relative_to(frames)}, frames {size[0]}x{size[1]}, {out['mean_jpeg_bytes'] / 1e3:.1f} kB "
          f"per JPEG, {load()}", flush=True)
    for normalise in (False, True):
        seconds = best_time(lambda: [augment_dive(paths, rng, normalise) for _ in range(args.loader_dives)],
                            args.repeats) / args.loader_dives
        key = "float_normalised" if normalise else "uint8"
        out[key] = {"seconds_per_dive": seconds, "dives_per_s": 1 / seconds, "frames_per_s": len(paths) / seconds}
        print(f"  {key}: {1 / seconds:.2f} dives/s = {len(paths) / seconds:.0f} frames/s per worker, {load()}",
              flush=True)
    # An alternative the numbers suggest: the squeeze is deterministic, so frames squeezed once to
    # 200 x 112 uint8 (6.4 MB per dive) leave only the flip and the crop per load.
    from aqa.features import transforms as T

    squeezed = args.workdir / "squeezed.npy"
    np.save(squeezed, np.stack([T.load_resized(p, RESIZE) for p in paths]))

    def from_squeezed():
        frames = np.load(squeezed, mmap_mode="r")
        flip, top = bool(rng.random() < 0.5), int(rng.integers(0, RESIZE[0] - CROP + 1))
        crop = frames[:, top:top + CROP, ::-1] if flip else frames[:, top:top + CROP]
        return torch.from_numpy(np.ascontiguousarray(crop)).permute(3, 0, 1, 2)
    seconds = best_time(lambda: [from_squeezed() for _ in range(args.loader_dives * 10)],
                        args.repeats) / (args.loader_dives * 10)
    out["presqueezed_uint8"] = {"seconds_per_dive": seconds, "dives_per_s": 1 / seconds,
                                "frames_per_s": len(paths) / seconds}
    print(f"  presqueezed_uint8 (memory-mapped, warm page cache): {1 / seconds:.1f} dives/s per worker, {load()}",
          flush=True)
    return out


# --------------------------------------------------------------------------- projection


def projection(args, ft: dict, ld: dict) -> dict:
    sustained = args.gpu_tflops * 1e12
    eval_dive = ft["i3d"]["eval_per_dive"]
    worker_rate = ld["uint8"]["dives_per_s"]
    rows = {}
    for method, m in ft["methods"].items():
        pairwise = method in PAIRWISE
        train = TRAIN_DIVES * m["flops_per_pair"]                       # each training dive is a query once
        evaluate = (TRAIN_DIVES + TEST_DIVES if pairwise else TEST_DIVES) * eval_dive
        per_run = EPOCHS[method] * (train + evaluate)
        one = per_run / sustained / 3600
        train_dives_per_s = sustained / m["flops_per_pair"] * m["dives_per_sample"]
        eval_dives_per_s = sustained / eval_dive
        rows[method] = {"epochs": EPOCHS[method], "pflop_per_run": per_run / 1e15, "hours_1_gpu": one,
                        f"hours_{args.gpus}_gpus": one / (args.gpus * args.scaling),
                        "gpu_dives_per_s_train": train_dives_per_s, "gpu_dives_per_s_eval": eval_dives_per_s,
                        "workers_train": math.ceil(train_dives_per_s / worker_rate),
                        "workers_eval": math.ceil(eval_dives_per_s / worker_rate)}
        print(f"  {method}: {per_run / 1e15:.0f} PFLOP per run ({EPOCHS[method]} epochs) -> {one:.2f} h on 1 "
              f"{args.gpu_name}, {one / (args.gpus * args.scaling):.2f} h on {args.gpus}; GPU wants "
              f"{train_dives_per_s:.0f} dives/s training ({rows[method]['workers_train']} workers), "
              f"{eval_dives_per_s:.0f} evaluating ({rows[method]['workers_eval']} workers)", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_paper_mode"))
    ap.add_argument("--dives", type=int, default=120, help="random cache size for the cached path")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--finetune-methods", nargs="*", default=["tsa", "fr"])
    ap.add_argument("--finetune-pairs", type=int, default=1)
    ap.add_argument("--loader-dives", type=int, default=5)
    ap.add_argument("--gpu-name", default="NVIDIA A100-SXM4-80GB")
    ap.add_argument("--gpu-tflops", type=float, default=100.0,
                    help="assumed sustained bf16 TFLOP/s of the GPU on this network (peak 312 dense)")
    ap.add_argument("--gpus", type=int, default=4)
    ap.add_argument("--scaling", type=float, default=0.9, help="assumed DDP scaling efficiency at --gpus")
    ap.add_argument("--skip", nargs="*", default=[], choices=["cached", "finetune", "loader"])
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="time by wall clock or by the process's CPU time (use cpu with 1 thread on a busy machine)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    CLOCK["name"] = args.clock
    args.workdir.mkdir(parents=True, exist_ok=True)

    from bench_train_eval import make_data

    from aqa.train.loop import resolve_device
    from aqa.train.run import split_rows

    resolve_device("cpu")   # the thread count the train stage would use (OMP_NUM_THREADS)
    train_cfg, eval_cfg = train_params()
    data = make_data(args.workdir, args.dives)
    pool, _, _ = split_rows(data, {**train_cfg, "validation_fraction": 0.0})   # paper mode: every training dive
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "nproc": os.cpu_count(),
              "clock": args.clock, "argv": sys.argv[1:],
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_start": os.getloadavg(),
              "gpu": {"name": args.gpu_name, "sustained_tflops": args.gpu_tflops, "gpus": args.gpus,
                      "scaling": args.scaling}}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {load()}", flush=True)
    if "cached" not in args.skip:
        result["cached"] = cached(args, data, pool, train_cfg, eval_cfg)
    if "finetune" not in args.skip:
        result["finetune"] = finetune(args, data, pool, train_cfg, eval_cfg)
    if "loader" not in args.skip:
        result["loader"] = loader(args)
    if "finetune" in result and "loader" in result:
        print(f"projection (from FLOPs, not measured): {args.gpu_name} at {args.gpu_tflops:g} TFLOP/s sustained; "
              f"{args.gpus} GPUs at {args.scaling:.0%} scaling", flush=True)
        result["projection"] = projection(args, result["finetune"], result["loader"])
    result["load_end"] = os.getloadavg()
    print(load())
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
