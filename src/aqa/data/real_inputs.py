"""The real data as DVC dependencies: fixed links to the folders params name.

Params name the real folders of a dataset anywhere (`extract_frames.frames_root.<dataset>`,
`synthesize_videos.<dataset>.source_annotations`), but a DVC stage's dependencies are fixed paths
in dvc.yaml, and DVC cannot make one from a value that may be null. So `aqa check-params --inputs
.aqa/inputs` (the DVC stage before all others, run whenever params.yaml changes) points one link
per dataset and kind at the folder params name:

    .aqa/inputs/<dataset>/frames       -> the real frames (extract_features depends on it)
    .aqa/inputs/<dataset>/masks        -> the real FineDiving-HM masks (extract_features depends on it)
    .aqa/inputs/<dataset>/annotations  -> the real annotation files (synthesize_videos depends on it)
    .aqa/inputs/none/                  an empty folder: the target when params name none

DVC follows a dependency that is a link and hashes the folder's content (every file's name, size
and md5, kept in its state database by inode, size and mtime, so an unchanged folder is only
stat'ed again): a changed frame re-runs what reads the frames; a moved folder with the same content
re-runs nothing that depends on the link. Nothing is copied (the release stays where it is and
never enters the DVC cache, so `dvc push` cannot send it anywhere). The links are bookkeeping of
the stage (`.aqa/` is git-ignored), never outputs: no DVC command ever removes them or their
targets. docs/CONTRACTS.md, "Real data".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aqa.errors import AqaError

NONE = "none"
KINDS = {"frames": "extract_frames.frames_root.{dataset}",
         "masks": "extract_frames.masks_root.{dataset}",
         "annotations": "synthesize_videos.{dataset}.source_annotations"}


class RealInputsError(AqaError):
    """A link of the real inputs cannot be made (something else is in its place)."""


def real_folder(params: dict[str, Any], dataset: str, kind: str) -> str | None:
    """The folder params name for `dataset`'s real `kind` (frames / masks / annotations), or None."""
    if kind == "frames":
        return params["extract_frames"]["frames_root"].get(dataset)
    if kind == "masks":
        return params["extract_frames"]["masks_root"].get(dataset)
    return params["synthesize_videos"].get(dataset, {}).get("source_annotations")


def link_real_inputs(params: dict[str, Any], inputs: str | Path) -> dict[Path, Path]:
    """Point `inputs/<dataset>/<kind>` at the real folder params name, or at `inputs/none`.

    Every dataset params knows gets its links; one left out of datasets.run (whose folders params
    do not check) links to `none`. Real folders are linked by absolute path (relative ones are
    read from the working directory, as the stages read them); each link is replaced atomically.
    Returns {link: target}. Refuses to replace anything but a link (RealInputsError naming it).
    """
    inputs = Path(inputs)
    none = inputs / NONE
    none.mkdir(parents=True, exist_ok=True)
    made = {}
    for dataset in sorted(params["extract_frames"]["frames_root"]):
        for kind in KINDS:
            folder = real_folder(params, dataset, kind) if dataset in params["datasets"]["run"] else None
            link = inputs / dataset / kind
            target = Path(os.path.abspath(folder)) if folder is not None else Path("..") / NONE
            _replace_link(link, target)
            made[link] = target
    return made


def _replace_link(link: Path, target: Path) -> None:
    if link.exists() and not link.is_symlink():
        raise RealInputsError(f"{link}: expected a link made by aqa check-params, found a "
                              f"{'folder' if link.is_dir() else 'file'}; move it away")
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target, target_is_directory=True)
    os.replace(tmp, link)
