"""Read side of the I3D feature cache (layout in docs/CONTRACTS.md).

``<root>/manifest.json`` describes how the features were made; ``<root>/<video>/<idx>/`` holds
``pooled.npy`` (V, S, 1024) and ``maps.npy`` (V, S, 1024, 4, 4). A dive folder appears by an
atomic rename, so a present folder is a finished dive; a file damaged afterwards (truncated,
overwritten) is caught by its .npy header and size (`array_problem`), without reading the data.
Nothing in the cache names a folder, a host or a time: a moved or cloned cache is the same cache.

FineParser's additions (aqa.features.additions: mixed4f.npy, sve.npy, masks.npy + masks.sha256)
are read per dive, memory-mapped, by `FeatureCache.load_additions`; the manifest's `fineparser`
entries say which the cache holds (`FeatureCache.additions`), and asking for one it lacks is a
one-line FeatureCacheError naming the cache and the param to set.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from aqa.errors import AqaError
from aqa.features import additions as A

MANIFEST = "manifest.json"
POOLED = "pooled.npy"
MAPS = "maps.npy"


class FeatureCacheError(AqaError):
    """The cache, its manifest or a dive's features are missing or malformed."""


def dive_dir(root: str | Path, video: str, idx: int) -> Path:
    return Path(root) / str(video) / str(int(idx))


FRAMES_DIGEST = "frames.sha256"


def is_finished(path: Path, frames_digest: str | None = None) -> bool:
    """Both arrays are there and, when `frames_digest` is given, they came from those frames."""
    if not ((path / POOLED).is_file() and (path / MAPS).is_file()):
        return False
    if frames_digest is None:
        return True
    digest_file = path / FRAMES_DIGEST
    return digest_file.is_file() and digest_file.read_text().strip() == frames_digest


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def array_problem(path: Path, shape: tuple[int | None, ...] | None = None,
                  dtype: str | None = None) -> str | None:
    """What is wrong with a stored .npy array, judged from its header and size; None if it looks whole.

    `shape` entries that are None are not checked (e.g. the map size, which depends on the crop).
    """
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = _HEADER_READERS.get(version)
            if read_header is None:
                return f"unexpected .npy format version {version}"
            found_shape, fortran, found_dtype = read_header(fh)
            data_start = fh.tell()
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError, SyntaxError, TypeError) as exc:  # numpy's errors for a bad header
        size = path.stat().st_size if path.is_file() else 0
        return "truncated (empty file)" if size == 0 else f"not a .npy array ({exc})"
    if found_dtype.hasobject or fortran:
        return f"not a feature array (dtype {found_dtype}, fortran order {fortran})"
    expected_size = data_start + int(np.prod(found_shape, dtype=np.int64)) * found_dtype.itemsize
    actual_size = path.stat().st_size
    if actual_size != expected_size:
        return f"truncated or padded ({actual_size} bytes, its header {found_shape} needs {expected_size})"
    if dtype is not None and found_dtype != np.dtype(dtype):
        return f"dtype {found_dtype}, expected {np.dtype(dtype)}"
    if shape is not None and (len(found_shape) != len(shape)
                              or any(e is not None and e != f for e, f in zip(shape, found_shape))):
        return f"shape {found_shape}, expected {tuple('*' if e is None else e for e in shape)}"
    return None


def dive_problem(folder: Path, *, views: int, num_snippets: int, dtype: str) -> str | None:
    """What is wrong with a dive folder's arrays for this protocol ("maps.npy: truncated ..."), or None."""
    expected = {POOLED: (views, num_snippets, 1024), MAPS: (views, num_snippets, 1024, None, None)}
    for name, shape in expected.items():
        problem = array_problem(folder / name, shape, dtype)
        if problem is not None:
            return f"{name}: {problem}"
    return None


def additions_problem(folder: Path, name: str, *, views: int, num_snippets: int, num_frames: int, dtype: str,
                      masks_digest: str | None = None) -> str | None:
    """What is wrong with a dive's addition `name` (mixed4f / sve / masks) for this protocol, or None.
    With `masks_digest`, masks made from other mask files count as wrong (re-drawn masks)."""
    expected = {"mixed4f": ((views, num_snippets, A.MIXED4F_CHANNELS, None, None, None), dtype),
                "sve": ((views, num_frames, None), dtype),
                "masks": ((views, None), "uint8")}[name]
    problem = array_problem(folder / A.ARRAYS[name], *expected)
    if problem is not None:
        return f"{A.ARRAYS[name]}: {problem}"
    if name == "masks" and masks_digest is not None:
        digest_file = folder / A.MASKS_DIGEST
        if not digest_file.is_file() or digest_file.read_text().strip() != masks_digest:
            return f"{A.MASKS_DIGEST}: made from other mask files"
    return None


class FeatureCache:
    """A finished (or partly finished) feature cache folder.

    `fingerprint` identifies the exact features (sha256 of the manifest and of every dive's
    frames digest): downstream stages record it so a model trained on other features, or on
    features of other frames, is noticed.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / MANIFEST
        if not self.manifest_path.is_file():
            raise FeatureCacheError(f"{self.manifest_path}: no feature manifest (run extract-features first)")

    @cached_property
    def _manifest_bytes(self) -> bytes:
        return self.manifest_path.read_bytes()

    @cached_property
    def manifest(self) -> dict[str, Any]:
        try:
            data = json.loads(self._manifest_bytes)
        except json.JSONDecodeError as exc:
            raise FeatureCacheError(f"{self.manifest_path}: not valid JSON: {exc}") from None
        if not isinstance(data, dict) or "views" not in data:
            raise FeatureCacheError(f"{self.manifest_path}: not a feature manifest (no 'views')")
        return data

    @cached_property
    def fingerprint(self) -> str:
        """Relative names and contents only: the same cache in another folder has the same fingerprint."""
        digest = hashlib.sha256(self._manifest_bytes)
        # masks.sha256 only where the cache holds masks: a cache without them keeps its fingerprint
        digests = [*self.root.glob(f"*/*/{FRAMES_DIGEST}"), *self.root.glob(f"*/*/{A.MASKS_DIGEST}")]
        for path in sorted(digests, key=lambda p: (p.parent.as_posix(), p.name)):
            if path.parent.name.startswith("."):  # an interrupted write's temporary, not a dive
                continue
            name = path.parent.relative_to(self.root).as_posix().encode()
            if path.name != FRAMES_DIGEST:  # (frames digests hash as they always did)
                name += b"/" + path.name.encode()
            digest.update(name + b"\0" + path.read_bytes())
        return digest.hexdigest()

    @property
    def views(self) -> int:
        return int(self.manifest["views"])

    def path(self, video: str, idx: int) -> Path:
        return dive_dir(self.root, video, idx)

    def has(self, video: str, idx: int) -> bool:
        return is_finished(self.path(video, idx))

    def load(self, video: str, idx: int) -> tuple[np.ndarray, np.ndarray]:
        """(pooled (V, S, 1024), maps (V, S, 1024, h, w)) memory-mapped, stored dtype."""
        folder = self.path(video, idx)
        if not self.has(video, idx):
            raise FeatureCacheError(f"{folder}: no features for dive {video}/{int(idx)} in the cache {self.root}")
        pooled = self._load_array(folder / POOLED, video, idx)
        maps = self._load_array(folder / MAPS, video, idx)
        if pooled.shape[0] != self.views or maps.shape[:2] != pooled.shape[:2]:
            raise FeatureCacheError(
                f"{folder}: shapes pooled {pooled.shape} / maps {maps.shape} disagree with "
                f"{self.views} view(s) in {self.manifest_path}"
            )
        return pooled, maps

    @property
    def additions(self) -> tuple[str, ...]:
        """The FineParser additions the manifest says the cache holds (batch keys, ARRAYS order)."""
        entries = self.manifest.get(A.MANIFEST_KEY) or {}
        return tuple(name for name in A.ARRAYS if name in entries)

    def require_additions(self, keys: Iterable[str]) -> None:
        """One line naming the cache and the param to set when the cache lacks an asked-for addition."""
        keys = tuple(keys)
        unknown = [k for k in keys if k not in A.ARRAYS]
        if unknown:
            raise FeatureCacheError(f"unknown cache addition(s) {unknown}; known: {list(A.ARRAYS)}")
        lacking = [k for k in keys if k not in self.additions]
        if lacking:
            dataset = self.root.parent.name if self.root.name == "i3d" else "<dataset>"
            setting = (f"true (with real frames, also extract_frames.masks_root.{dataset})" if "masks" in lacking
                       else "true (or no_masks)")
            raise FeatureCacheError(
                f"{self.root}: the feature cache has no {', '.join(lacking)} (FineParser's additions); set "
                f"extract_features.fineparser.{dataset}: {setting} and re-run extract_features (`dvc repro`)")

    def load_additions(self, video: str, idx: int, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """{key: array} of one dive's additions, memory-mapped, stored shape and dtype:
        mixed4f (V, S, 832, 4, 7, 7), sve (V, 96, 512), masks (V, 96 * 112 * 112 / 8) uint8 packed
        (`unpack_masks` gives bool (V, 96, 112, 112))."""
        keys = tuple(keys)
        self.require_additions(keys)
        folder = self.path(video, idx)
        if not self.has(video, idx):
            raise FeatureCacheError(f"{folder}: no features for dive {video}/{int(idx)} in the cache {self.root}")
        out = {}
        for key in keys:
            array = self._load_array(folder / A.ARRAYS[key], video, idx)
            if array.shape[0] != self.views:
                raise FeatureCacheError(f"{folder / A.ARRAYS[key]}: {array.shape[0]} view(s), {self.manifest_path} "
                                        f"says {self.views}")
            out[key] = array
        return out

    def unpack_masks(self, packed: np.ndarray) -> np.ndarray:
        """Packed masks rows (..., T * crop * crop / 8) -> bool (..., T, crop, crop), with the
        manifest's protocol (num_frames, crop)."""
        protocol = self.manifest["protocol"]
        return A.unpack_dive_masks(packed, int(protocol["num_frames"]), int(protocol["crop"]))

    def _load_array(self, path: Path, video: str, idx: int) -> np.ndarray:
        problem = array_problem(path)  # header and size: np.load's own errors do not name the file
        if problem is None:
            try:
                return np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                problem = f"unreadable ({exc})"
        raise FeatureCacheError(f"{path}: damaged features of dive {video}/{int(idx)}: {problem}; "
                                "re-run extract_features (`dvc repro`) to recompute that dive")

    def load_many(self, keys: Iterable[str | tuple[str, int]],
                  dtype: np.dtype | type = np.float32) -> tuple[np.ndarray, np.ndarray]:
        """Stack dives into (pooled (N, V, S, 1024), maps (N, V, S, 1024, h, w)) in `dtype`.

        `keys` are "<video>/<idx>" strings or (video, idx) pairs; order is kept.
        """
        pairs = [_split_key(k) for k in keys]
        if not pairs:
            raise FeatureCacheError(f"load_many on {self.root}: no dives requested")
        first_pooled, first_maps = self.load(*pairs[0])
        pooled = np.empty((len(pairs),) + first_pooled.shape, dtype=dtype)
        maps = np.empty((len(pairs),) + first_maps.shape, dtype=dtype)
        for i, (video, idx) in enumerate(pairs):
            p, m = self.load(video, idx)
            if p.shape != first_pooled.shape or m.shape != first_maps.shape:
                raise FeatureCacheError(f"{self.path(video, idx)}: shape {p.shape}/{m.shape} differs from "
                                        f"{first_pooled.shape}/{first_maps.shape} of the first dive")
            pooled[i] = p
            maps[i] = m
        return pooled, maps


def _split_key(key: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(key, tuple):
        return str(key[0]), int(key[1])
    video, sep, idx = str(key).rpartition("/")
    if not sep or not idx.lstrip("-").isdigit():
        raise FeatureCacheError(f"dive key {key!r} is not '<video>/<idx>'")
    return video, int(idx)
