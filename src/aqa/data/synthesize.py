"""Stage synthesize_videos: stand-in competition videos, their annotations and masks, per dataset.

FineDiving: from real FineDiving annotation files (every dive keeps its key, split, scores and
labels; its frames move onto the synthetic video's timeline) or from a sampled annotation set with
the real statistics; writes the six release files. MTL-AQA: from the real MTL-AQA dive dictionary
(every dive keeps its key, split, dive number, DD, judges and score) or from a sampled MTL-AQA-shaped
set; MTL-AQA has no step labels, so the take-off / flight / entry timeline the renderer follows is
invented (`aqa.data.synth.mtl_aqa`); writes the release's dive dictionary and split 0. Either way,
one H.264 mp4 per competition video and FineDiving-HM-style masks for every dive frame. Each dive
is drawn from an RNG seeded by (seed, video, idx), so the output does not depend on the order of work.

With the dataset's real frames given (`extract_frames.frames_root.<dataset>`, which needs its real
annotation files), nothing is rendered: the stage writes the real annotations (the subset, if
asked, with their own frame numbers: the real frames are numbered by them) and leaves the video
and mask folders empty, so no later stage reads stand-in footage.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from aqa.data.datasets import FINEDIVING, MTL_AQA, dataset_spec
from aqa.data.finediving import (COARSE, FINE, AnnotationError, Dive, FineDivingAnnotations, Key,
                                 read_finediving, write_finediving)
from aqa.data.mtl_aqa import ANNOTATIONS as MTL_ANNOTATIONS
from aqa.data.mtl_aqa import resolve_info_dir, write_mtl_aqa
from aqa.data.synth.dive_numbers import parse_dive_number
from aqa.data.synth.diver import BOARD_HEIGHT, DiveMotion, Frame
from aqa.data.synth.encode import open_video
from aqa.data.synth.mtl_aqa import MIN_FRAMES, MtlSource, read_mtl_source, release_records, sample_mtl_aqa
from aqa.data.synth.render import Renderer, sample_look
from aqa.data.synth.sampler import (Event, SampledSet, event_of_video, quality_from_score, rng_for,
                                    sample_annotations, stratified_subset)
from aqa.data.synth.scene import build_scene, follow
from aqa.data.synth.timeline import VideoPlan, place_on_timeline, step_timing
from aqa.io import atomic_path

log = logging.getLogger(__name__)

REQUIRED = ("seed", "height", "width", "fps", "gap_frames", "crf")
SOURCE_KEYS = ("source_annotations", "num_videos", "dives_per_video", "test_fraction", "subset")


def load_source(cfg: dict, seed: int, render: bool = True) -> SampledSet:
    """The FineDiving annotation set to render and each dive's latent step qualities.

    `cfg`: the `synthesize_videos.finediving` section; `seed`: synthesize_videos.seed. `render`
    False (real frames): the real dives are not re-timed, so their ranges are left for
    convert_annotations to validate (`convert_annotations.invalid_dives`).
    """
    if cfg["source_annotations"] is None:
        sampled = sample_annotations({**cfg, "seed": seed})
        ann, quality = sampled.annotations, sampled.quality
        log.info("sampled %d dives in %d videos", len(ann.dives), int(cfg["num_videos"]))
    else:
        ann = read_finediving(Path(cfg["source_annotations"]))
        quality = {k: quality_from_score(d, seed) for k, d in ann.dives.items()}
        log.info("read %d dives from %s", len(ann.dives), cfg["source_annotations"])
    ann = stratified_subset(ann, cfg["subset"]["max_dives"], int(cfg["subset"]["seed"]))
    if cfg["source_annotations"] is not None and render:
        check_timing(ann, Path(cfg["source_annotations"]))
    return SampledSet(ann, {k: quality[k] for k in ann.dives})


def load_mtl_source(cfg: dict, seed: int, render: bool = True) -> MtlSource:
    """The MTL-AQA set to render: the real info folder's dives (split 0) or a sampled set.

    `cfg`: the `synthesize_videos.mtl_aqa` section; `source_annotations` may name the info folder
    or the MTL-AQA folder holding it (`info/`, CoRe's layout).
    """
    if cfg["source_annotations"] is None:
        source = sample_mtl_aqa(cfg, seed)
        log.info("sampled %d MTL-AQA-shaped dives in %d videos", len(source.annotations.dives),
                 int(cfg["num_videos"]))
    else:
        info = resolve_info_dir(cfg["source_annotations"])
        source = read_mtl_source(info, seed)
        log.info("read %d MTL-AQA dives from %s", len(source.annotations.dives), info)
    ann = stratified_subset(source.annotations, cfg["subset"]["max_dives"], int(cfg["subset"]["seed"]))
    if cfg["source_annotations"] is not None and render:
        check_mtl_timing(ann, resolve_info_dir(cfg["source_annotations"]) / MTL_ANNOTATIONS)
    return MtlSource(ann, {k: source.quality[k] for k in ann.dives},
                     {k: source.records[k] for k in ann.dives})


def check_timing(ann: FineDivingAnnotations, folder: Path) -> None:
    """Refuse a dive to render whose frame range is impossible or disagrees with its labels.

    The timeline gives each dive as many frames as it has labels; a dive whose own range says
    otherwise would be silently re-timed, so it is refused, naming the file and the dive.
    """
    for d in ann.dives.values():
        where = f"dive {d.video}/{d.idx} (start_frame {d.start_frame}, end_frame {d.end_frame})"
        if d.start_frame < 0 or d.end_frame < d.start_frame:
            problem = "starts before frame 0" if d.start_frame < 0 else "ends before it starts"
            raise AnnotationError(f"{folder / COARSE}: {where} {problem}; fix the annotation (the "
                                  "stand-in video would have to re-time the dive)")
        if len(d.frame_labels) != d.num_frames:
            raise AnnotationError(f"{folder / FINE}: {where} has {len(d.frame_labels)} frame labels for "
                                  f"{d.num_frames} frames; fix the annotation (one label per frame)")


def check_mtl_timing(ann: FineDivingAnnotations, path: Path) -> None:
    """Refuse an MTL-AQA dive to render whose frame range is impossible or too short to draw."""
    for d in ann.dives.values():
        where = f"dive {d.video}/{d.idx} (start_frame {d.start_frame}, end_frame {d.end_frame})"
        if d.start_frame < 0 or d.end_frame < d.start_frame:
            problem = "starts before frame 0" if d.start_frame < 0 else "ends before it starts"
            raise AnnotationError(f"{path}: {where} {problem}; fix the annotation (the stand-in video "
                                  "would have to re-time the dive)")
        if d.num_frames < MIN_FRAMES:
            raise AnnotationError(f"{path}: {where} has {d.num_frames} frame(s), too few to draw a "
                                  f"take-off, a flight and an entry (at least {MIN_FRAMES})")


def synthesize_videos(cfg: dict, *, dataset: str, videos_dir: Path, annotations_dir: Path,
                      masks_dir: Path, real_frames: bool = False) -> None:
    """Render every competition video of one dataset's annotation set, its masks and its annotations.

    `cfg`: params' synthesize_videos section (the rendering keys and one sub-section per dataset).
    `real_frames`: the dataset's real frames are given (extract_frames.frames_root.<dataset>):
    render nothing, write the real annotations as they are (`write_real_annotations`).
    """
    dataset_spec(dataset)
    missing = [k for k in REQUIRED if k not in cfg] + [f"{dataset}.{k}" for k in SOURCE_KEYS
                                                        if k not in cfg.get(dataset, {})]
    if missing:
        raise KeyError(f"synthesize_videos params lack: {', '.join(missing)}")
    for side in ("height", "width"):
        if int(cfg[side]) % 2:
            raise ValueError(f"synthesize_videos.{side} must be even for yuv420p, got {cfg[side]}")
    seed = int(cfg["seed"])
    if real_frames:
        write_real_annotations(cfg, dataset=dataset, videos_dir=Path(videos_dir),
                               annotations_dir=Path(annotations_dir), masks_dir=Path(masks_dir))
        return
    source = load_source(cfg[dataset], seed) if dataset == FINEDIVING else load_mtl_source(cfg[MTL_AQA], seed)
    ann, plans = place_on_timeline(source.annotations, tuple(cfg["gap_frames"]), seed)
    render_all(ann, source.quality, plans, cfg, Path(videos_dir), Path(masks_dir))
    if dataset == FINEDIVING:
        write_finediving(ann, Path(annotations_dir))
    else:  # the release's records, re-timed, with the release's integer video numbers
        write_mtl_aqa(release_records(source, ann), [(int(v), i) for v, i in ann.train_keys],
                      [(int(v), i) for v, i in ann.test_keys], Path(annotations_dir))
    log.info("%s: wrote %d videos, %d dives, %d frames", dataset, len(plans), len(ann.dives),
             sum(p.num_frames for p in plans))


def write_real_annotations(cfg: dict, *, dataset: str, videos_dir: Path, annotations_dir: Path,
                           masks_dir: Path) -> None:
    """The real frames' own annotations into `annotations_dir`; empty video and mask folders.

    The dives keep their frame numbers (the real frames are numbered by them), the subset of
    `synthesize_videos.<dataset>.subset` applies, and no footage is rendered: extract_frames has no
    video to cut and every later stage reads the real frames (docs/CONTRACTS.md).
    """
    if cfg[dataset]["source_annotations"] is None:
        raise AnnotationError(f"extract_frames.frames_root.{dataset} is set but synthesize_videos.{dataset}."
                              "source_annotations is null: real frames need their real annotation files")
    seed = int(cfg["seed"])
    if dataset == FINEDIVING:
        ann = load_source(cfg[dataset], seed, render=False).annotations
        write_finediving(ann, annotations_dir)
    else:
        source = load_mtl_source(cfg[MTL_AQA], seed, render=False)
        ann = source.annotations
        write_mtl_aqa(release_records(source, ann), [(int(v), i) for v, i in ann.train_keys],
                      [(int(v), i) for v, i in ann.test_keys], annotations_dir)
    for folder in (videos_dir, masks_dir):  # outputs of the stage: present, and empty
        with atomic_path(folder) as tmp_dir:
            tmp_dir.mkdir(parents=True)
    log.info("%s: real frames given: wrote the real annotations of %d dives; no footage rendered",
             dataset, len(ann.dives))


def render_all(ann: FineDivingAnnotations, quality: dict[Key, np.ndarray], plans: list[VideoPlan], cfg: dict,
               videos_dir: Path, masks_dir: Path) -> None:
    """Every video of `plans` (whole videos per worker process)."""
    videos_dir.mkdir(parents=True, exist_ok=True)
    total = sum(p.num_frames for p in plans)
    workers = min(int(cfg.get("workers", 1)), len(plans))
    jobs = [(plan, _only(ann, plan), {k: quality[k] for k in plan.keys}, cfg, videos_dir / f"{plan.name}.mp4",
             masks_dir / plan.name) for plan in plans]
    with tqdm(total=total, unit="frame", desc="synthesize_videos", mininterval=2.0) as bar:
        if workers <= 1:
            for job in jobs:
                render_video(*job, bar=bar)
        else:  # whole videos per process; every dive has its own RNG, so the result is the same
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(render_video, *job): job[0] for job in jobs}
                for fut in as_completed(futures):
                    fut.result()
                    bar.update(futures[fut].num_frames)


def _only(ann: FineDivingAnnotations, plan: VideoPlan) -> FineDivingAnnotations:
    """The dives of one video (what a worker process needs)."""
    return FineDivingAnnotations({k: ann.dives[k] for k in plan.keys}, ann.sub_action_types)


def render_video(plan: VideoPlan, ann: FineDivingAnnotations, quality: dict[Key, np.ndarray], cfg: dict,
                 out_path: Path, masks_root: Path, bar: tqdm | None = None) -> None:
    """One mp4 with all its dives (and the gaps between them) plus the dives' mask folders."""
    seed, h, w, fps = int(cfg["seed"]), int(cfg["height"]), int(cfg["width"]), int(cfg["fps"])
    event = event_of_video(plan.name, [ann.dives[k].action_type for k in plan.keys])
    scene = build_scene(event.board, h, w, rng_for(seed, plan.name, "scene"))
    renderer = Renderer(scene, h, w)
    with open_video(out_path, width=w, height=h, fps=fps, crf=int(cfg["crf"])) as video:
        cursor = 0
        for key in plan.keys:
            dive = ann.dives[key]
            for rgb in _gap_frames(renderer, event, dive.start_frame - cursor, seed, plan.name, key[1]):
                video.write(rgb)
            with atomic_path(masks_root / str(key[1])) as tmp_dir:
                tmp_dir.mkdir(parents=True)
                for offset, (rgb, mask) in enumerate(_dive_frames(renderer, event, dive, quality[key], seed, fps)):
                    video.write(rgb)
                    Image.fromarray(mask, mode="L").save(tmp_dir / f"{dive.start_frame + offset:05d}.jpg", quality=90)
            cursor = dive.end_frame + 1
            if bar is not None:
                bar.update(dive.num_frames)
        for rgb in _gap_frames(renderer, event, plan.num_frames - cursor, seed, plan.name, "end"):
            video.write(rgb)
    if bar is not None:
        bar.update(plan.num_frames - sum(ann.dives[k].num_frames for k in plan.keys))


def _dive_frames(renderer: Renderer, event: Event, dive: Dive, q: np.ndarray, seed: int, fps: int):
    """Yield (rgb, mask) for every frame of one dive."""
    rng = rng_for(seed, dive.video, dive.idx, "render")
    dn = parse_dive_number(dive.action_type)
    timing = step_timing(dive.frame_labels, dn.half_twists)
    motion = DiveMotion(dn, timing, event.board, q, rng, fps=fps)
    look = sample_look(rng)
    lag = int(rng.integers(0, 3))
    frames = [motion.frame(f) for f in range(timing.num_frames)]
    com = np.array([fr.com for fr in frames])
    cam = follow(com, water_margin=0.5 + rng.uniform(0, 0.4), rng=rng)
    noise_idx = rng.integers(0, 1 << 16, size=timing.num_frames)
    for f, fr in enumerate(frames):
        partner = None
        if event.synchronised:  # the partner, a step behind in depth, nearly in time
            p = frames[max(0, f - lag)]
            partner = Frame(p.com + np.array([0.45, 0.08]), p.theta, p.pose, p.facing, 0.0, -1)
        yield renderer.frame(cam, f, look, [fr], partner, dive.start_frame + f, int(noise_idx[f]))


def _gap_frames(renderer: Renderer, event: Event, n: int, seed: int, video: str, tag: object):
    """The pool between dives: no diver, the camera resting near the board end."""
    if n <= 0:
        return
    rng = rng_for(seed, video, tag, "gap")
    look = sample_look(rng)
    rest = np.array([[0.3, BOARD_HEIGHT[event.board] - 0.5]] * n)
    cam = follow(rest, water_margin=1.0, rng=rng)
    noise_idx = rng.integers(0, 1 << 16, size=n)
    for i in range(n):
        rgb, _ = renderer.frame(cam, i, look, [], None, i, int(noise_idx[i]))
        yield rgb
