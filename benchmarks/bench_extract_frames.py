"""Benchmark extract_frames against the ffmpeg command line doing the same cut, scale and JPEG.

    .venv/bin/python benchmarks/bench_extract_frames.py [--videos 3 --frames 1500 --dives 15]

Makes H.264 test videos (PyAV, 25 fps, moving texture), annotates `--dives` dives of ~100 frames
per video, then times, alternately and `--repeats` times each:
  (a) aqa.data.frames.extract_frames (params' workers, height, jpeg_quality);
  (b) ffmpeg, one pass per video: the decoded stream is split into one `trim` branch per dive,
      each scaled (`scale=-2:<h>:flags=bicubic`, our size rule) and written by the image2 muxer
      as <dive>/%05d.jpg numbered from the dive's start frame. This is ffmpeg at its best: one
      decode per video, no per-dive process start or seek.
JPEG quality: ffmpeg's mjpeg takes a quantiser (-q:v), not a libjpeg quality; the run calibrates
-q:v on one dive to the value whose mean file size is nearest Pillow's quality, and prints both.
It also checks that ffmpeg's frame n and ours are the same picture (mean absolute difference).
`--profile` times the parts of our pipeline on one thread: decode, scale + RGB, JPEG encode.
ffmpeg absent: (b) is skipped with a message.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from aqa.data.finediving import Dive, FineDivingAnnotations, read_finediving, write_finediving
from aqa.data.frames import extract_frames
from aqa.data.video import FrameReader, resize_frame, scaled_size, write_video


def make_frames(num_frames: int, width: int, height: int, seed: int):
    """Moving content: a scrolling random texture, a lighting drift and a moving block."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, size=(height, 2 * width, 3), dtype=np.uint8)
    texture = ((texture.astype(np.uint16) + np.roll(texture, 1, axis=0) + np.roll(texture, 1, axis=1))
               // 3).astype(np.uint8)  # soften, like real footage rather than pure noise
    for k in range(num_frames):
        x = (3 * k) % width
        img = texture[:, x:x + width].copy()
        img = np.clip(img.astype(np.int16) + int(30 * np.sin(k / 40)), 0, 255).astype(np.uint8)
        bx, by = (7 * k) % (width - 60), (height // 3 + int(40 * np.sin(k / 15))) % (height - 80)
        img[by:by + 80, bx:bx + 60] = (240, 200, 60)
        yield img


def make_dataset(root: Path, videos: int, frames: int, dives: int, size: tuple[int, int]):
    raw, ann_dir = root / "videos", root / "annotations"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    all_dives = {}
    paths = []
    slot = frames // dives
    for v in range(videos):
        name = f"bench{v}"
        path = raw / f"{name}.mp4"
        if not path.exists():
            print(f"writing {path} ({frames} frames {size[0]}x{size[1]})", flush=True)
            write_video(path, make_frames(frames, *size, seed=v), fps=25, crf=18)
        paths.append(path)
        for i in range(dives):
            length = int(rng.integers(int(slot * 0.8), slot + 1))
            start = i * slot + int(rng.integers(0, slot - length + 1))
            end = start + length - 1
            n = end - start + 1
            all_dives[(name, i)] = Dive(name, i, "train", "107B", 3.0, 60.0, [6.0, 6.0, 6.0], start, end,
                                        np.array([n // 3, 2 * n // 3]), np.ones(n, np.int64))
    write_finediving(FineDivingAnnotations(all_dives, {1: "x"}, list(all_dives), []), ann_dir)
    return paths, ann_dir


def ffmpeg_video(video: Path, dives: list[Dive], out: Path, height: int, qscale: int) -> None:
    branches, maps = [], []
    graph = [f"[0:v]split={len(dives)}" + "".join(f"[s{i}]" for i in range(len(dives)))]
    for i, d in enumerate(dives):
        graph.append(f"[s{i}]trim=start_frame={d.start_frame}:end_frame={d.end_frame + 1},"
                     f"scale=-2:{height}:flags=bicubic[o{i}]")
        dive_dir = out / d.video / str(d.idx)
        dive_dir.mkdir(parents=True, exist_ok=True)
        maps += ["-map", f"[o{i}]", "-fps_mode", "passthrough", "-q:v", str(qscale),
                 "-start_number", str(d.start_frame), str(dive_dir / "%05d.jpg")]
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(video),
           "-filter_complex", ";".join(graph), *maps]
    subprocess.run(cmd, check=True)


def ffmpeg_video_select(video: Path, dives: list[Dive], out: Path, height: int, qscale: int) -> None:
    """One output: `select` every dive frame, name files by frame number, then move them per dive."""
    flat = out / f".{video.stem}.all"
    flat.mkdir(parents=True, exist_ok=True)
    ranges = "+".join(f"between(n\\,{d.start_frame}\\,{d.end_frame})" for d in dives)
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(video),
           "-vf", f"select='{ranges}',scale=-2:{height}:flags=bicubic", "-fps_mode", "passthrough",
           "-frame_pts", "1", "-q:v", str(qscale), str(flat / "%05d.jpg")]
    subprocess.run(cmd, check=True)
    for d in dives:  # the bench's dives do not overlap, so a rename suffices
        dive_dir = out / d.video / str(d.idx)
        dive_dir.mkdir(parents=True, exist_ok=True)
        for n in range(d.start_frame, d.end_frame + 1):
            (flat / f"{n:05d}.jpg").rename(dive_dir / f"{n:05d}.jpg")
    flat.rmdir()


FFMPEG_MODES = {"split": ffmpeg_video, "select": ffmpeg_video_select}


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process's threads and its finished children)."""
    t0, c0 = time.perf_counter(), os.times()
    fn()
    c1 = os.times()
    cpu = (c1.user + c1.system + c1.children_user + c1.children_system
           - c0.user - c0.system - c0.children_user - c0.children_system)
    return time.perf_counter() - t0, cpu


def run_ffmpeg(videos, dives_of, out: Path, height: int, qscale: int, mode: str) -> tuple[float, float]:
    shutil.rmtree(out, ignore_errors=True)
    return _timed(lambda: [FFMPEG_MODES[mode](v, dives_of[v.stem], out, height, qscale) for v in videos])


def run_ours(videos, ann_dir: Path, out: Path, cfg: dict) -> tuple[float, float]:
    shutil.rmtree(out, ignore_errors=True)
    return _timed(lambda: extract_frames(videos, annotations_dir=ann_dir, frames_root=out, cfg=cfg))


def mean_size(folder: Path) -> float:
    return statistics.mean(p.stat().st_size for p in folder.glob("*.jpg"))


def calibrate_qscale(video: Path, dive: Dive, ours_dir: Path, out: Path, height: int) -> tuple[int, dict]:
    target = mean_size(ours_dir)
    sizes = {}
    for q in range(2, 8):
        ffmpeg_video(video, [dive], out / f"q{q}", height, q)
        sizes[q] = mean_size(out / f"q{q}" / dive.video / str(dive.idx))
    return min(sizes, key=lambda q: abs(sizes[q] - target)), sizes


def compare(ours: Path, theirs: Path, dives: list[Dive]) -> tuple[float, float]:
    """Max mean |difference| between our frame n and ffmpeg's frame n, and min against its n+1.

    The second figure shows what a one-frame misalignment would look like on this content.
    """
    def load(root: Path, d: Dive, n: int) -> np.ndarray:
        return np.asarray(Image.open(root / d.video / str(d.idx) / f"{n:05d}.jpg"), dtype=np.float32)

    same, shifted = [], []
    for d in dives[:5]:
        for n in (d.start_frame, d.end_frame - 1):
            a = load(ours, d, n)
            same.append(float(np.abs(a - load(theirs, d, n)).mean()))
            shifted.append(float(np.abs(a - load(theirs, d, n + 1)).mean()))
    return max(same), min(shifted)


def profile(videos, dives_of, height: int, quality: int) -> None:
    """Single-thread cost per frame of each part of our pipeline, on the first video."""
    video = videos[0]
    dives = sorted(dives_of[video.stem], key=lambda d: d.start_frame)
    frames = []
    t0 = time.perf_counter()
    with FrameReader(video) as reader:
        for d in dives:
            frames += [f for _, f in reader.read(d.start_frame, d.end_frame)]
    t_dec = time.perf_counter() - t0
    from av.video.reformatter import VideoReformatter
    ref = VideoReformatter()
    t0 = time.perf_counter()
    images = [resize_frame(f, height, ref) for f in frames]
    t_rgb = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for i, img in enumerate(images):
            img.save(f"{tmp}/{i:05d}.jpg", format="JPEG", quality=quality)
        t_jpg = time.perf_counter() - t0
    n = len(frames)
    print(f"profile over {n} frames of {video.name} (ms/frame, one thread except decode threads):")
    print(f"  decode (thread_type AUTO) {1e3 * t_dec / n:6.2f}")
    print(f"  scale + RGB (swscale)     {1e3 * t_rgb / n:6.2f}")
    print(f"  JPEG encode + write (PIL) {1e3 * t_jpg / n:6.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--dives", type=int, default=15)
    ap.add_argument("--size", default="456x256", help="source video WxH")
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None, help="keep videos here (reused across runs)")
    args = ap.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_extract_frames."))
    data = workdir / f"data_{args.videos}x{args.frames}_{args.size}"
    videos, ann_dir = make_dataset(data, args.videos, args.frames, args.dives, size)
    ann = read_finediving(ann_dir)
    dives_of: dict[str, list[Dive]] = {}
    for d in ann.dives.values():
        dives_of.setdefault(d.video, []).append(d)
    total = sum(d.num_frames for d in ann.dives.values())
    cfg = {"frames_root": None, "height": args.height, "jpeg_quality": args.quality, "workers": args.workers}
    out_w, out_h = scaled_size(*size, args.height)
    print(f"{args.videos} videos x {args.frames} frames {args.size} -> {out_w}x{out_h}, "
          f"{len(ann.dives)} dives, {total} frames to write; workers={args.workers}")

    if args.profile:
        profile(videos, dives_of, args.height, args.quality)

    have_ffmpeg = shutil.which("ffmpeg") is not None
    ours_dir = workdir / "out_ours"
    run_ours(videos, ann_dir, ours_dir, cfg)  # warm the page cache and imports
    qscale = None
    if have_ffmpeg:
        first = min(dives_of[videos[0].stem], key=lambda d: d.idx)
        qscale, sizes = calibrate_qscale(videos[0], first, ours_dir / first.video / str(first.idx),
                                         workdir / "calib", args.height)
        print(f"JPEG size: Pillow quality {args.quality}: "
              f"{mean_size(ours_dir / first.video / str(first.idx)) / 1e3:.1f} kB/frame; ffmpeg "
              + ", ".join(f"-q:v {q}: {s / 1e3:.1f}" for q, s in sizes.items()) + f" -> -q:v {qscale}")
    else:
        print("ffmpeg not found on PATH: skipping the ffmpeg comparison "
              "(apt-get install -y ffmpeg to run it)")
    modes = list(FFMPEG_MODES) if have_ffmpeg else []
    times: dict[str, list[tuple[float, float]]] = {"ours": []} | {m: [] for m in modes}
    for _ in range(args.repeats):  # alternate, so that load from elsewhere hits all alike
        times["ours"].append(run_ours(videos, ann_dir, ours_dir, cfg))
        for m in modes:
            times[m].append(run_ffmpeg(videos, dives_of, workdir / f"out_ffmpeg_{m}", args.height,
                                       qscale, m))

    fps = {}
    for name, ts in times.items():
        wall, cpu = min(t for t, _ in ts), min(c for _, c in ts)
        fps[name] = (total / wall, total / cpu)
        print(f"{name:>14}: {total / wall:7.1f} frames/s wall, {total / cpu:7.1f} frames per CPU-s  "
              f"(best of {args.repeats}; wall " + ", ".join(f"{t:.2f}" for t, _ in ts) + " s)")
    if have_ffmpeg:
        best = max(modes, key=lambda m: fps[m][0])
        print(f"ratio ours / ffmpeg ({best}, the faster): {fps['ours'][0] / fps[best][0]:.2f}x wall, "
              f"{fps['ours'][1] / fps[best][1]:.2f}x per CPU-s")
        for m in modes:
            out = workdir / f"out_ffmpeg_{m}"
            n_theirs = sum(1 for _ in out.rglob("*.jpg"))
            if n_theirs != total:
                print(f"WARNING: ffmpeg ({m}) wrote {n_theirs} frames, expected {total}")
            same, shifted = compare(ours_dir, out, sorted(ann.dives.values(), key=lambda d: d.key))
            print(f"frame identity ({m}): mean |ours(n) - ffmpeg(n)| <= {same:.2f}, "
                  f"|ours(n) - ffmpeg(n+1)| >= {shifted:.2f} (of 255)")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
