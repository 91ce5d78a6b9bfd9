"""extract_features: frames + I3D -> the per-dive feature cache (layout in docs/CONTRACTS.md).

Per dive: the 96 protocol frames (``sample_frame_numbers`` on the dive folder's first/last frame),
the reference test transform (``transforms``), 9 snippets of 16 frames, optionally a flipped
second view; I3D pooled features and Mixed_5c maps averaged over time.

Throughput: worker threads decode and resize JPEGs (PIL releases the GIL) a few dives ahead
while the main thread runs the backbone on batches of `batch_snippets` snippets that may span
several dives; a dive is written as soon as its last snippet is through. Memory stays bounded
by the prefetch depth and one batch, however many dives.

Validate before destroying: params, annotations, the weights (sha256 against fetch_i3d's
manifest, then a tensors-only load) and every dive's frames are checked before the output folder
is touched, so bad input never costs a finished cache.

Resumability: the manifest is compared next (a changed one clears the old dive folders and is
rewritten before any dive), and each dive folder appears by an atomic rename, so after an
interruption the next run finds the same manifest and skips every finished dive. A dive counts
as finished only when its frames digest matches and its arrays' headers and sizes are whole.

Location independence: the manifest holds no path (each dive's frames.sha256 says which frames
it came from), so a moved checkout or a clone reuses the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from aqa.data.protocol import sample_frame_numbers
from aqa.features import transforms as T
from aqa.errors import AqaError
from aqa.features.cache import FRAMES_DIGEST, MANIFEST, MAPS, POOLED, dive_dir, dive_problem, is_finished
from aqa.io import atomic_path, write_json_atomic
from aqa.models.i3d_weights import load_verified_weights

log = logging.getLogger(__name__)

BACKBONE = "i3d"
# Bump when the computation changes in a way the params do not show: old caches are then redone.
EXTRACTOR_VERSION = 1
PROTOCOL_KEYS = ("num_frames", "snippet_length", "snippet_stride", "num_snippets", "resize", "crop",
                 "normalization", "flip_view", "dtype", "autocast")
# Keys of older manifests that no longer decide the numbers: a cache that differs only in them is kept.
RETIRED_MANIFEST_KEYS = ("frames_root",)  # an absolute path; frames.sha256 per dive replaced it


class FeatureExtractionError(AqaError):
    """Bad input to extract_features: params, missing frames, dives."""


@dataclass(frozen=True)
class DiveJob:
    video: str
    idx: int
    frame_paths: tuple[Path, ...]  # the num_frames protocol frames, in order (repeats allowed)

    @cached_property
    def digest(self) -> str:
        """sha256 of the protocol frames' bytes: a dive's features are reused only for the same frames."""
        digest = hashlib.sha256()
        for path in dict.fromkeys(self.frame_paths):  # distinct, in order
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()

    @property
    def key(self) -> str:
        return f"{self.video}/{self.idx}"


@dataclass
class ExtractStats:
    dives: int = 0
    snippets: int = 0
    forwards: int = 0
    seconds: float = 0.0


# ----------------------------------------------------------------------------- frames on disk

def dive_job(frames_root: Path, video: str, idx: int, start_frame: int, end_frame: int,
             num_frames: int) -> DiveJob:
    """Check a dive's frame folder against its annotated range and pick the protocol frames.

    The reference loader indexes the sorted file list by position, which equals the frame
    number only when no frame is missing, so a gap is refused rather than read differently.
    """
    key = f"{video}/{idx}"
    folder = frames_root / str(video) / str(int(idx))
    if not folder.is_dir():
        raise FeatureExtractionError(f"dive {key}: frame folder {folder} does not exist")
    numbers: dict[int, Path] = {}
    for path in folder.glob("*.jpg"):
        try:
            numbers[int(path.stem)] = path
        except ValueError:
            raise FeatureExtractionError(f"dive {key}: {path} is not named <frame number>.jpg") from None
    if not numbers:
        raise FeatureExtractionError(f"dive {key}: no .jpg frames in {folder}")
    first, last = min(numbers), max(numbers)
    if (first, last) != (int(start_frame), int(end_frame)):
        raise FeatureExtractionError(
            f"dive {key}: frames in {folder} run {first}..{last}, annotations say "
            f"{int(start_frame)}..{int(end_frame)} (missing or extra frames at the ends)")
    missing = [n for n in range(first, last + 1) if n not in numbers]
    if missing:
        raise FeatureExtractionError(
            f"dive {key}: {len(missing)} frame(s) missing in {folder} between {first} and {last}, "
            f"e.g. {missing[:5]}")
    wanted = sample_frame_numbers(first, last, num_frames)
    return DiveJob(str(video), int(idx), tuple(numbers[int(n)] for n in wanted))


def load_views(job: DiveJob, cfg: dict[str, Any]) -> np.ndarray:
    """Decode a dive's protocol frames once each: views (V, T, crop, crop, 3) uint8."""
    decoded: dict[Path, np.ndarray] = {}
    frames = []
    for path in job.frame_paths:  # short clips repeat frames: decode each file once
        if path not in decoded:
            decoded[path] = T.load_resized(path, cfg["resize"])
        frames.append(decoded[path])
    shapes = {f.shape for f in decoded.values()}
    if len(shapes) != 1:  # cannot happen after resize unless a frame is not RGB-convertible
        raise FeatureExtractionError(f"dive {job.key}: frames decode to different shapes {shapes}")
    return T.crop_views(np.stack(frames), int(cfg["crop"]), bool(cfg["flip_view"]))


def load_snippets(job: DiveJob, cfg: dict[str, Any]) -> torch.Tensor:
    """A dive's snippets (V * S, 3, L, crop, crop) uint8, view-major."""
    starts = T.snippet_starts(cfg["num_frames"], cfg["snippet_length"], cfg["snippet_stride"], cfg["num_snippets"])
    return T.to_snippets(load_views(job, cfg), starts, cfg["snippet_length"])


def prefetch(jobs: Iterable[DiveJob], fn: Callable[[DiveJob], Any], workers: int,
             depth: int) -> Iterator[tuple[DiveJob, Any]]:
    """Yield (job, fn(job)) in order, computing up to `depth` jobs ahead on `workers` threads."""
    if workers <= 0:
        for job in jobs:
            yield job, fn(job)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
    try:
        it = iter(jobs)
        pending: deque = deque()
        for job in it:
            pending.append((job, pool.submit(fn, job)))
            if len(pending) >= depth:
                break
        while pending:
            job, fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(fn, nxt)))
            yield job, fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------- backbone

def load_backbone(state: dict[str, torch.Tensor], device: torch.device) -> torch.nn.Module:
    """Kinetics-400 I3D in eval mode (BatchNorm frozen) with a verified state dict, strictly."""
    from aqa.models.i3d import InceptionI3d

    model = InceptionI3d(num_classes=400)
    model.load_state_dict(state, strict=True)  # names and shapes were checked when it was loaded
    return model.eval().to(device)


def compute_dtype(device: torch.device, autocast: bool) -> torch.dtype:
    """The dtype I3D computes in: float32, or with autocast float16 on CUDA and bfloat16 on a CPU
    whose oneDNN supports it (about twice float32's speed on an AVX512-BF16 CPU; docs/BACKBONE.md)."""
    if not autocast:
        return torch.float32
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return torch.float32


@torch.inference_mode()
def forward_snippets(model: torch.nn.Module, clips: torch.Tensor, normalization: str,
                     device: torch.device, dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, np.ndarray]:
    """uint8 snippets (B, 3, L, H, W) -> (pooled (B, 1024), maps (B, 1024, h, w)) float32."""
    x = T.normalize(clips.to(device, non_blocking=True), normalization)  # (B, 3, L, H, W)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        pooled, mixed = model.features(x)  # (B, 1024), (B, 1024, T', h, w)
    maps = mixed.float().mean(dim=2)  # (B, 1024, h, w): average over time, as the protocol
    return pooled.float().cpu().numpy(), maps.cpu().numpy()


# ----------------------------------------------------------------------------- the run

def write_dive(folder: Path, pooled: np.ndarray, maps: np.ndarray, views: int, dtype: str,
               digest: str | None = None) -> None:
    """Store one dive's (V, S, ...) arrays and its frames digest; the folder appears whole or not at all."""
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        np.save(tmp / POOLED, pooled.reshape(views, -1, *pooled.shape[1:]).astype(dtype))
        np.save(tmp / MAPS, maps.reshape(views, -1, *maps.shape[1:]).astype(dtype))
        if digest is not None:
            (tmp / FRAMES_DIGEST).write_text(digest + "\n")


def run_extraction(jobs: list[DiveJob], model: torch.nn.Module, cfg: dict[str, Any], out_dir: Path,
                   device: torch.device, progress: bool = True) -> ExtractStats:
    """Stream `jobs` through the backbone in batches of cfg.batch_snippets and write each dive."""
    dtype = compute_dtype(device, bool(cfg["autocast"]))
    views = 2 if cfg["flip_view"] else 1
    per_dive = views * int(cfg["num_snippets"])
    batch_size = int(cfg["batch_snippets"])
    workers = int(cfg["workers"])
    stats = ExtractStats()
    started = time.perf_counter()

    queue: deque = deque()  # (job, snippets, next offset) not yet through the backbone
    queued = 0
    results: dict[str, list] = {}  # key -> [pooled, maps, filled]

    def run_batch(limit: int) -> None:
        nonlocal queued
        parts, owners = [], []
        taken = 0
        while queue and taken < limit:
            job, clips, offset = queue[0]
            n = min(limit - taken, clips.shape[0] - offset)
            parts.append(clips[offset:offset + n])
            owners.append((job, offset, n))
            taken += n
            if offset + n == clips.shape[0]:
                queue.popleft()
            else:
                queue[0] = (job, clips, offset + n)
        queued -= taken
        pooled, maps = forward_snippets(model, torch.cat(parts), cfg["normalization"], device, dtype)
        stats.forwards += 1
        stats.snippets += taken
        pos = 0
        for job, offset, n in owners:
            slot = results.setdefault(job.key, [np.empty((per_dive,) + pooled.shape[1:], np.float32),
                                                np.empty((per_dive,) + maps.shape[1:], np.float32), 0])
            slot[0][offset:offset + n] = pooled[pos:pos + n]
            slot[1][offset:offset + n] = maps[pos:pos + n]
            slot[2] += n
            pos += n
            if slot[2] == per_dive:
                write_dive(dive_dir(out_dir, job.video, job.idx), slot[0], slot[1], views, cfg["dtype"],
                           job.digest)
                del results[job.key]
                stats.dives += 1
                bar.update(1)

    depth = max(2, 2 * workers)
    with tqdm(total=len(jobs), unit="dive", desc="extract_features", disable=not progress) as bar:
        for job, clips in prefetch(jobs, lambda j: load_snippets(j, cfg), workers, depth):
            if clips.shape[0] != per_dive:
                raise FeatureExtractionError(f"dive {job.key}: {clips.shape[0]} snippets, expected {per_dive}")
            queue.append((job, clips, 0))
            queued += clips.shape[0]
            while queued >= batch_size:
                run_batch(batch_size)
        while queued:
            run_batch(batch_size)
    stats.seconds = time.perf_counter() - started
    return stats


def build_manifest(cfg: dict[str, Any], weights_sha256: str,
                   device: torch.device = torch.device("cpu")) -> dict[str, Any]:
    """Everything that decides the cached numbers; a different manifest means a stale cache.

    No path, host or time: the frames are identified per dive by frames.sha256.
    """
    return {
        # what autocast resolved to on this machine: a cache made in another precision is redone
        "compute_dtype": str(compute_dtype(device, bool(cfg["autocast"]))).removeprefix("torch."),
        "backbone": BACKBONE,
        "extractor_version": EXTRACTOR_VERSION,
        "weights_sha256": weights_sha256,
        "protocol": {k: cfg[k] for k in PROTOCOL_KEYS},
        "resize_interpolation": "bilinear",
        "views": 2 if cfg["flip_view"] else 1,
        "view_names": ["original", "hflip"][: 2 if cfg["flip_view"] else 1],
        "maps_time_reduction": "mean",
    }


def _dive_folders(out_dir: Path) -> Iterator[Path]:
    """Dive folders (whole or damaged) and leftover temporaries (<video>/<idx>, <video>/.<idx>.*.tmp)."""
    for video in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        for sub in sorted(p for p in video.iterdir() if p.is_dir()):
            holds_dive = any((sub / name).exists() for name in (POOLED, MAPS, FRAMES_DIGEST))
            if holds_dive or (sub.name.startswith(".") and sub.name.endswith(".tmp")):
                yield sub


def prepare_out_dir(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Keep the cache if its manifest matches; otherwise clear its dives and write the new one.

    Order matters for resumption: old manifest removed, dives cleared, new manifest written,
    and only then dives computed.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MANIFEST
    old = None
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            log.warning("%s: unreadable manifest, treating the cache as stale", path)
    current = json.loads(json.dumps(manifest))  # JSON round trip: tuples -> lists
    stale = list(_dive_folders(out_dir))
    if _same_manifest(old, current):
        for tmp in (p for p in stale if p.name.endswith(".tmp")):  # an interrupted dive
            shutil.rmtree(tmp, ignore_errors=True)
        if old != current:  # only retired keys differ: same numbers, rewritten without them
            write_json_atomic(path, current)
        return
    finished = [p for p in stale if not p.name.endswith(".tmp")]
    if finished:
        log.info("%s: manifest changed (%s); clearing %d cached dive(s)", out_dir,
                 _diff_keys(old, current), len(finished))
    path.unlink(missing_ok=True)
    for folder in stale:
        shutil.rmtree(folder)
        if not any(folder.parent.iterdir()):
            folder.parent.rmdir()
    write_json_atomic(path, current)


def _same_manifest(old: dict | None, new: dict) -> bool:
    if not isinstance(old, dict):
        return False
    return {k: v for k, v in old.items() if k not in RETIRED_MANIFEST_KEYS} == new


def _diff_keys(old: dict | None, new: dict) -> str:
    if old is None:
        return "no previous manifest"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "differs in " + ", ".join(keys)


def check_geometry(cfg: dict[str, Any]) -> None:
    """The snippets fit the sampled frames and the crop fits the resized frame, or the key is named."""
    try:
        T.snippet_starts(cfg["num_frames"], cfg["snippet_length"], cfg["snippet_stride"], cfg["num_snippets"])
    except ValueError as exc:
        raise FeatureExtractionError(
            f"extract_features.num_snippets / snippet_length / snippet_stride: {exc}") from None
    height, width = (int(v) for v in cfg["resize"])
    if int(cfg["crop"]) > min(height, width):
        raise FeatureExtractionError(f"extract_features.crop = {cfg['crop']} exceeds extract_features.resize "
                                     f"[{height}, {width}] (the crop is taken from the resized frame)")


def read_dive_ranges(dives_parquet: Path) -> "pandas.DataFrame":  # noqa: F821 (pandas imported lazily)
    """The dives table, with the columns this stage needs."""
    from aqa.data.annotations import read_dives

    dives = read_dives(dives_parquet)
    needed = {"video", "idx", "start_frame", "end_frame"}
    if not needed <= set(dives.columns):
        raise FeatureExtractionError(f"{dives_parquet}: missing column(s) {sorted(needed - set(dives.columns))}")
    return dives


def jobs_to_compute(every: list[DiveJob], out_dir: Path, cfg: dict[str, Any]) -> list[DiveJob]:
    """The dives without whole features from the same frame bytes (frames re-extracted or
    re-rendered since, or arrays damaged after they were written, are recomputed)."""
    views = 2 if cfg["flip_view"] else 1
    jobs = []
    for job in every:
        folder = dive_dir(out_dir, job.video, job.idx)
        if not is_finished(folder, job.digest):
            jobs.append(job)
            continue
        problem = dive_problem(folder, views=views, num_snippets=int(cfg["num_snippets"]), dtype=cfg["dtype"])
        if problem is not None:
            log.warning("%s: %s; recomputing dive %s", folder, problem, job.key)
            jobs.append(job)
    return jobs


def extract_features(*, frames_root: Path, dives_parquet: Path, weights_path: Path, out_dir: Path,
                     cfg: dict[str, Any], work_dir: Path | None = None) -> None:
    """Compute the I3D cache for every dive of `dives_parquet` (all splits), resumably.

    Everything is checked (params, annotations, weights, every dive's frames) before `out_dir`
    is touched; only then may a changed manifest clear the old cache. With `work_dir` (the DVC
    stage's .aqa/work/<out_dir>, aqa.workdir) the cache is resumed and extended there (started
    from the last output when there is no work folder), and becomes out_dir once every dive is in.
    """
    if work_dir is not None:
        from aqa.workdir import publish, start

        start(work_dir, out_dir)
        _extract(frames_root=frames_root, dives_parquet=dives_parquet, weights_path=weights_path,
                 out_dir=Path(work_dir), cfg=cfg)
        publish(work_dir, out_dir)
        return
    _extract(frames_root=frames_root, dives_parquet=dives_parquet, weights_path=weights_path, out_dir=out_dir,
             cfg=cfg)


def _extract(*, frames_root: Path, dives_parquet: Path, weights_path: Path, out_dir: Path,
             cfg: dict[str, Any]) -> None:
    frames_root, out_dir, weights_path = Path(frames_root), Path(out_dir), Path(weights_path)
    torch.manual_seed(int(cfg["seed"]))
    check_geometry(cfg)
    if not frames_root.is_dir():
        raise FeatureExtractionError(f"{frames_root}: frames root is not a folder")
    dives = read_dive_ranges(dives_parquet)
    state, weights_sha256 = load_verified_weights(weights_path)
    # Every frame folder before the first forward pass: fail in seconds, not hours.
    every = [dive_job(frames_root, r.video, r.idx, r.start_frame, r.end_frame, int(cfg["num_frames"]))
             for r in dives.itertuples(index=False)]

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    prepare_out_dir(out_dir, build_manifest(cfg, weights_sha256, device))
    jobs = jobs_to_compute(every, out_dir, cfg)
    log.info("%d dive(s) in %s, %d already cached, %d to compute", len(dives), dives_parquet,
             len(dives) - len(jobs), len(jobs))
    if not jobs:
        return
    model = load_backbone(state, device)
    del state
    log.info("I3D on %s in %s (%d CPU threads), %d decode worker(s), %d snippets per forward",
             device, compute_dtype(device, bool(cfg["autocast"])), torch.get_num_threads(), int(cfg["workers"]),
             int(cfg["batch_snippets"]))
    stats = run_extraction(jobs, model, cfg, out_dir, device)
    log.info("%d dive(s), %d snippets in %.1f s (%.2f dives/s, %.1f snippets/s, %d forward passes) -> %s",
             stats.dives, stats.snippets, stats.seconds, stats.dives / max(stats.seconds, 1e-9),
             stats.snippets / max(stats.seconds, 1e-9), stats.forwards, out_dir)
