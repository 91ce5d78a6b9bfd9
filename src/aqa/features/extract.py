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

FineParser's additions (aqa.features.additions: mixed4f from the same I3D pass, the SVE
backbone's per-frame features, the packed masks), for a dataset whose
`extract_features.fineparser.<dataset>` asks: a dive computed anew gets them in its folder; a
finished dive without them (or with a damaged one, or masks of other mask files) gets only what
it lacks, each file by an atomic rename, its pooled / maps left as they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from aqa.data import masks as MK
from aqa.data.protocol import sample_frame_numbers
from aqa.features import additions as A
from aqa.features import transforms as T
from aqa.errors import AqaError
from aqa.features.cache import (
    FRAMES_DIGEST, MANIFEST, MAPS, POOLED, additions_problem, dive_dir, dive_problem, is_finished,
)
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
    mask_paths: tuple[Path, ...] | None = None  # their masks, when the cache holds masks
    need: frozenset = frozenset({"base"})  # what to compute: "base" (a whole new folder) and/or additions

    @cached_property
    def digest(self) -> str:
        """sha256 of the protocol frames' bytes: a dive's features are reused only for the same frames."""
        digest = hashlib.sha256()
        for path in dict.fromkeys(self.frame_paths):  # distinct, in order
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()

    @cached_property
    def masks_digest(self) -> str:
        return A.masks_digest(self.mask_paths or ())

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
    from aqa.models.sap_pool import use_separable_pools

    model = InceptionI3d(num_classes=400)
    model.load_state_dict(state, strict=True)  # names and shapes were checked when it was loaded
    # the same values bit for bit, ~0.6x the pass's time (torch's bfloat16 max_pool3d was ~43 % of it)
    return use_separable_pools(model.eval().to(device))


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
                     device: torch.device, dtype: torch.dtype = torch.float32, *, with_mixed4f: bool = False
                     ) -> tuple[np.ndarray, ...]:
    """uint8 snippets (B, 3, L, H, W) -> (pooled (B, 1024), maps (B, 1024, h, w)) float32, and with
    `with_mixed4f` Mixed_4f of the same pass (B, 832, T', h', w'): (832, 4, 7, 7) for 16 x 112 x 112."""
    x = T.normalize(clips.to(device, non_blocking=True), normalization)  # (B, 3, L, H, W)
    captured: list[torch.Tensor] = []
    hook = model.mixed_4f.register_forward_hook(lambda m, i, o: captured.append(o)) if with_mixed4f else None
    try:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            pooled, mixed = model.features(x)  # (B, 1024), (B, 1024, T', h, w)
    finally:
        if hook is not None:
            hook.remove()
    maps = mixed.float().mean(dim=2)  # (B, 1024, h, w): average over time, as the protocol
    if not with_mixed4f:
        return pooled.float().cpu().numpy(), maps.cpu().numpy()
    return pooled.float().cpu().numpy(), maps.cpu().numpy(), captured[0].float().cpu().numpy()


# ----------------------------------------------------------------------------- the run

def write_dive(folder: Path, pooled: np.ndarray, maps: np.ndarray, views: int, dtype: str,
               digest: str | None = None, additions: dict[str, np.ndarray] | None = None,
               masks_digest: str | None = None) -> None:
    """Store one dive's (V, S, ...) arrays and its frames digest (and its additions, already in
    their stored shape and dtype); the folder appears whole or not at all."""
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        np.save(tmp / POOLED, pooled.reshape(views, -1, *pooled.shape[1:]).astype(dtype))
        np.save(tmp / MAPS, maps.reshape(views, -1, *maps.shape[1:]).astype(dtype))
        if digest is not None:
            (tmp / FRAMES_DIGEST).write_text(digest + "\n")
        for name, array in (additions or {}).items():
            np.save(tmp / A.ARRAYS[name], array)
        if masks_digest is not None:
            (tmp / A.MASKS_DIGEST).write_text(masks_digest + "\n")


def write_additions(folder: Path, additions: dict[str, np.ndarray], masks_digest: str | None) -> None:
    """Add arrays to a finished dive folder, each file by an atomic rename; the masks digest last,
    so it never vouches for masks not yet written."""
    for name, array in additions.items():
        with atomic_path(folder / A.ARRAYS[name]) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, array)
    if masks_digest is not None:
        with atomic_path(folder / A.MASKS_DIGEST) as tmp:
            tmp.write_text(masks_digest + "\n")


@dataclass
class Additions:
    """What run_extraction adds per dive: the arrays, the SVE backbone (None when no dive needs it)."""

    arrays: tuple[str, ...]
    sve_backbone: torch.nn.Module | None = None


def load_dive(job: DiveJob, cfg: dict[str, Any]) -> dict[str, Any]:
    """What the dive's job needs from disk (in a worker thread): frames decoded once for the I3D
    snippets and the SVE views, the masks packed."""
    out: dict[str, Any] = {}
    if job.need & {"base", "mixed4f", "sve"}:
        views = load_views(job, cfg)
        if "sve" in job.need:
            out["views"] = views
        if job.need & {"base", "mixed4f"}:
            starts = T.snippet_starts(cfg["num_frames"], cfg["snippet_length"], cfg["snippet_stride"],
                                      cfg["num_snippets"])
            out["clips"] = T.to_snippets(views, starts, cfg["snippet_length"])
    if "masks" in job.need:
        frame_size = MK.image_size(job.frame_paths[0])
        out["masks"] = A.packed_masks(job.mask_paths, frame_size, cfg["resize"], int(cfg["crop"]),
                                      bool(cfg["flip_view"]))
    return out


def run_extraction(jobs: list[DiveJob], model: torch.nn.Module | None, cfg: dict[str, Any], out_dir: Path,
                   device: torch.device, progress: bool = True, additions: Additions | None = None) -> ExtractStats:
    """Stream `jobs` through the backbone in batches of cfg.batch_snippets and write each dive.

    A job needing "base" gets a whole new folder (with the `additions` arrays); a job needing only
    additions gets them added to its folder (mixed4f through the same I3D pass, its pooled / maps
    discarded); sve and masks alone never run I3D (`model` may then be None).
    """
    dtype = compute_dtype(device, bool(cfg["autocast"]))
    views = 2 if cfg["flip_view"] else 1
    per_dive = views * int(cfg["num_snippets"])
    batch_size = int(cfg["batch_snippets"])
    workers = int(cfg["workers"])
    arrays = additions.arrays if additions is not None else ()
    with_mixed4f = "mixed4f" in arrays
    stats = ExtractStats()
    started = time.perf_counter()

    queue: deque = deque()  # (job, snippets, next offset) not yet through the backbone
    queued = 0
    results: dict[str, list] = {}  # key -> [pooled, maps, mixed4f, filled]
    extras: dict[str, dict[str, np.ndarray]] = {}  # key -> additions computed outside the I3D pass

    def finish(job: DiveJob, pooled=None, maps=None, mixed4f=None) -> None:
        add = extras.pop(job.key, {})
        if mixed4f is not None:  # every dive through I3D needs it when the cache holds it
            add["mixed4f"] = mixed4f.reshape(views, -1, *mixed4f.shape[1:]).astype(cfg["dtype"])
        add = {name: add[name] for name in A.ARRAYS if name in add}  # a stable file order
        masks_digest = job.masks_digest if "masks" in add else None
        folder = dive_dir(out_dir, job.video, job.idx)
        if "base" in job.need:
            write_dive(folder, pooled, maps, views, cfg["dtype"], job.digest, add, masks_digest)
        else:
            write_additions(folder, add, masks_digest)
        stats.dives += 1
        bar.update(1)

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
        out = forward_snippets(model, torch.cat(parts), cfg["normalization"], device, dtype, with_mixed4f=with_mixed4f)
        pooled, maps = out[0], out[1]
        mixed4f = out[2] if with_mixed4f else None
        stats.forwards += 1
        stats.snippets += taken
        pos = 0
        for job, offset, n in owners:
            slot = results.get(job.key)
            if slot is None:
                slot = results[job.key] = [
                    np.empty((per_dive,) + pooled.shape[1:], np.float32),
                    np.empty((per_dive,) + maps.shape[1:], np.float32),
                    None if mixed4f is None else np.empty((per_dive,) + mixed4f.shape[1:], np.float32), 0]
            slot[0][offset:offset + n] = pooled[pos:pos + n]
            slot[1][offset:offset + n] = maps[pos:pos + n]
            if mixed4f is not None:
                slot[2][offset:offset + n] = mixed4f[pos:pos + n]
            slot[3] += n
            pos += n
            if slot[3] == per_dive:
                del results[job.key]
                finish(job, slot[0], slot[1], slot[2])

    depth = max(2, 2 * workers)
    with tqdm(total=len(jobs), unit="dive", desc="extract_features", disable=not progress) as bar:
        for job, loaded in prefetch(jobs, lambda j: load_dive(j, cfg), workers, depth):
            add = extras.setdefault(job.key, {})
            if "masks" in loaded:
                add["masks"] = loaded["masks"]
            if "views" in loaded:
                add["sve"] = A.sve_features(additions.sve_backbone, loaded["views"], device, dtype).astype(cfg["dtype"])
            clips = loaded.get("clips")
            if clips is None:
                finish(job)
                continue
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
    and only then dives computed. FineParser's additions (the manifest's `fineparser` entries)
    are judged apart: the same base with other additions keeps every dive and only removes the
    additions whose entry changed (`_prepare_additions`).
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
        for tmp in out_dir.glob("*/*/.*.tmp"):  # an interrupted addition's file
            tmp.unlink(missing_ok=True)
        _prepare_additions(path, old, current, [p for p in stale if not p.name.endswith(".tmp")])
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


def _prepare_additions(path: Path, old: dict, current: dict, dives: list[Path]) -> None:
    """Same base manifest: remove from every dive the additions whose manifest entry changed (or
    that are no longer wanted), with a manifest naming none of them meanwhile, so an interruption
    never leaves an addition under an entry it was not made with; then write the current manifest."""
    before = old.get(A.MANIFEST_KEY) or {}
    after = current.get(A.MANIFEST_KEY) or {}
    changed = sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))
    if changed:
        base = {k: v for k, v in current.items() if k != A.MANIFEST_KEY}
        kept = {k: v for k, v in before.items() if k not in changed}
        write_json_atomic(path, {**base, A.MANIFEST_KEY: kept} if kept else base)
        files = [A.ARRAYS[n] for n in changed] + ([A.MASKS_DIGEST] if "masks" in changed else [])
        removed = 0
        for folder in dives:
            for name in files:
                if (folder / name).exists():
                    (folder / name).unlink()
                    removed += 1
        log.info("%s: FineParser additions %s changed; removed %d file(s) of them, pooled / maps kept",
                 path.parent, ", ".join(changed), removed)
    if old != current:  # additions changed, or only retired keys differ (same numbers, rewritten)
        write_json_atomic(path, current)


def _same_manifest(old: dict | None, new: dict) -> bool:
    """The same base manifest (what pooled / maps came from); the additions' entries are not part of it."""
    if not isinstance(old, dict):
        return False
    ignore = set(RETIRED_MANIFEST_KEYS) | {A.MANIFEST_KEY}
    return {k: v for k, v in old.items() if k not in ignore} == {k: v for k, v in new.items() if k != A.MANIFEST_KEY}


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


def jobs_to_compute(every: list[DiveJob], out_dir: Path, cfg: dict[str, Any],
                    arrays: tuple[str, ...] = ()) -> list[DiveJob]:
    """The dives without whole features from the same frame bytes (frames re-extracted or
    re-rendered since, or arrays damaged after they were written, are recomputed), each with
    what it needs: "base" (everything, a new folder), or only the `arrays` of FineParser's
    additions it lacks (missing, damaged, or masks of other mask files)."""
    views = 2 if cfg["flip_view"] else 1
    shape = dict(views=views, num_snippets=int(cfg["num_snippets"]), num_frames=int(cfg["num_frames"]),
                 dtype=cfg["dtype"])
    everything = frozenset({"base", *arrays})
    jobs = []
    for job in every:
        folder = dive_dir(out_dir, job.video, job.idx)
        if not is_finished(folder, job.digest):
            jobs.append(replace(job, need=everything))
            continue
        problem = dive_problem(folder, views=views, num_snippets=int(cfg["num_snippets"]), dtype=cfg["dtype"])
        if problem is not None:
            log.warning("%s: %s; recomputing dive %s", folder, problem, job.key)
            jobs.append(replace(job, need=everything))
            continue
        lacking = {name for name in arrays
                   if additions_problem(folder, name, masks_digest=job.masks_digest if name == "masks" else None,
                                        **shape) is not None}
        if lacking:
            jobs.append(replace(job, need=frozenset(lacking)))
    return jobs


def extract_features(*, frames_root: Path, dives_parquet: Path, weights_path: Path, out_dir: Path,
                     cfg: dict[str, Any], dataset: str | None = None, masks_root: Path | None = None,
                     work_dir: Path | None = None) -> None:
    """Compute the I3D cache for every dive of `dives_parquet` (all splits), resumably, with
    FineParser's additions when `extract_features.fineparser.<dataset>` asks for them (masks from
    `masks_root`; None: real frames without masks, so no masks).

    Everything is checked (params, annotations, weights, every dive's frames and masks) before
    `out_dir` is touched; only then may a changed manifest clear the old cache. With `work_dir` (the
    DVC stage's .aqa/work/<out_dir>, aqa.workdir) the cache is resumed and extended there (started
    from the last output when there is no work folder), and becomes out_dir once every dive is in.
    """
    if work_dir is not None:
        from aqa.workdir import publish, start

        start(work_dir, out_dir)
        _extract(frames_root=frames_root, dives_parquet=dives_parquet, weights_path=weights_path,
                 out_dir=Path(work_dir), cfg=cfg, dataset=dataset, masks_root=masks_root)
        publish(work_dir, out_dir)
        return
    _extract(frames_root=frames_root, dives_parquet=dives_parquet, weights_path=weights_path, out_dir=out_dir,
             cfg=cfg, dataset=dataset, masks_root=masks_root)


def _extract(*, frames_root: Path, dives_parquet: Path, weights_path: Path, out_dir: Path,
             cfg: dict[str, Any], dataset: str | None, masks_root: Path | None) -> None:
    frames_root, out_dir, weights_path = Path(frames_root), Path(out_dir), Path(weights_path)
    torch.manual_seed(int(cfg["seed"]))
    check_geometry(cfg)
    if not frames_root.is_dir():
        raise FeatureExtractionError(f"{frames_root}: frames root is not a folder")
    dives = read_dive_ranges(dives_parquet)
    state, weights_sha256 = load_verified_weights(weights_path)
    arrays = A.wanted_arrays(cfg, dataset)
    if "masks" in arrays and masks_root is None:
        log.warning("extract_features.fineparser.%s: no masks for these frames (real frames without "
                    "extract_frames.masks_root.%s): the cache gets mixed4f and sve only", dataset, dataset)
        arrays = tuple(a for a in arrays if a != "masks")
    # Every frame folder before the first forward pass: fail in seconds, not hours.
    every = [dive_job(frames_root, r.video, r.idx, r.start_frame, r.end_frame, int(cfg["num_frames"]))
             for r in dives.itertuples(index=False)]
    if "masks" in arrays:  # every dive's masks too (names, gaps, modes, sizes), before anything is cleared
        every = with_masks(every, dives, masks_root, dataset, int(cfg["num_frames"]))

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    manifest = build_manifest(cfg, weights_sha256, device)
    if arrays:
        manifest[A.MANIFEST_KEY] = A.manifest_entries(
            arrays, cfg, sve_weights_sha256=A.sve_weights_digest(cfg, weights_sha256),
            compute_dtype=manifest["compute_dtype"])
    prepare_out_dir(out_dir, manifest)
    jobs = jobs_to_compute(every, out_dir, cfg, arrays)
    log.info("%d dive(s) in %s, %d already cached, %d to compute", len(dives), dives_parquet,
             len(dives) - len(jobs), len(jobs))
    if not jobs:
        return
    additions = None
    if arrays:
        needs_sve = any("sve" in job.need for job in jobs)
        additions = Additions(arrays, A.load_sve_backbone(cfg, state, device)[0] if needs_sve else None)
        log.info("FineParser additions %s: %d dive(s) computed whole, %d extended", ", ".join(arrays),
                 sum("base" in j.need for j in jobs), sum("base" not in j.need for j in jobs))
    needs_i3d = any(job.need & {"base", "mixed4f"} for job in jobs)
    model = load_backbone(state, device) if needs_i3d else None
    del state
    log.info("I3D on %s in %s (%d CPU threads), %d decode worker(s), %d snippets per forward",
             device, compute_dtype(device, bool(cfg["autocast"])), torch.get_num_threads(), int(cfg["workers"]),
             int(cfg["batch_snippets"]))
    stats = run_extraction(jobs, model, cfg, out_dir, device, additions=additions)
    log.info("%d dive(s), %d snippets in %.1f s (%.2f dives/s, %.1f snippets/s, %d forward passes) -> %s",
             stats.dives, stats.snippets, stats.seconds, stats.dives / max(stats.seconds, 1e-9),
             stats.snippets / max(stats.seconds, 1e-9), stats.forwards, out_dir)


def with_masks(every: list[DiveJob], dives, masks_root: Path | None, dataset: str | None,
               num_frames: int) -> list[DiveJob]:
    """Each dive's job with its protocol masks, checked (MaskError naming the file) before the
    cache is touched: the folder, one mask per frame of the range, each mask's mode and size."""
    if not Path(masks_root).is_dir():
        raise A.AdditionsError(
            f"extract_features.fineparser.{dataset} asks for masks but the masks folder {masks_root} does not "
            f"exist (extract_frames.masks_root.{dataset}, else the stand-in's data/raw/{dataset}/masks; set "
            f"extract_features.fineparser.{dataset}: no_masks for a dataset without masks)")
    out = []
    for job, r in zip(every, dives.itertuples(index=False)):
        paths = MK.dive_mask_paths(masks_root, r.video, r.idx, r.start_frame, r.end_frame, num_frames)
        A.check_mask_headers(paths, MK.image_size(job.frame_paths[0]))
        out.append(replace(job, mask_paths=paths))
    return out
