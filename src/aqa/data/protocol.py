"""The input protocol of the reference loaders (TSA / FineParser): which frames, which transitions.

Behaviour follows FineDiving_Pair.py `load_video` of the authors' code (PAPERS.md section 2):
96 frame numbers from ``linspace(first, last, 96)`` truncated to int (short clips repeat frames),
the frame labels read at those positions, and two transitions: the first sampled position of the
second step and of the last step (in order of first appearance), each minus one.
"""

from __future__ import annotations

import numpy as np

from aqa.errors import AqaError

NUM_FRAMES = 96


class ProtocolError(AqaError):
    """A dive's frame range or labels cannot be put on the sampled scale."""


def sample_frame_numbers(start_frame: int, end_frame: int, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """Absolute frame numbers the reference loader reads: linspace(start, end, n) cast to int.

    The reference takes start/end from the first and last jpg of the dive, i.e. the annotated
    range. Returns int64 of length `num_frames`, non-decreasing, first = start, last = end.
    """
    start_frame, end_frame = int(start_frame), int(end_frame)
    if num_frames < 1:
        raise ProtocolError(f"num_frames must be >= 1, got {num_frames}")
    if end_frame < start_frame:
        raise ProtocolError(f"empty frame range: start_frame {start_frame} > end_frame {end_frame}")
    # astype truncates toward zero, like the reference's astype(np.int); frames are >= 0.
    return np.linspace(start_frame, end_frame, num_frames).astype(np.int64)


def sample_indices(clip_length: int, num_frames: int = NUM_FRAMES, *, start_frame: int = 0) -> np.ndarray:
    """Positions (0-based, relative to the first frame) sampled from a clip of `clip_length` frames.

    Computed as the reference does, ``linspace(start, end, n).astype(int) - start``. This is NOT
    always ``linspace(0, length - 1, n).astype(int)``: when i * (length - 1) / (n - 1) is a whole
    number, floating-point rounding can land just below it at offset 0 but on it once the absolute
    start is added (11 of the 3000 real dives). Pass the dive's absolute `start_frame` to be exact.
    """
    if clip_length < 1:
        raise ProtocolError(f"clip length must be >= 1, got {clip_length}")
    start_frame = int(start_frame)
    return sample_frame_numbers(start_frame, start_frame + clip_length - 1, num_frames) - start_frame


def sampled_frame_labels(
    frame_labels: np.ndarray, num_frames: int = NUM_FRAMES, *, start_frame: int = 0
) -> np.ndarray:
    """The per-frame labels read at the sampled positions, shape (num_frames,)."""
    labels = np.asarray(frame_labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ProtocolError(f"frame_labels must be a non-empty 1-D array, got shape {labels.shape}")
    return labels[sample_indices(labels.size, num_frames, start_frame=start_frame)]


def transitions_from_sampled(sampled: np.ndarray) -> tuple[int, int]:
    """Transitions from labels already on the sampled scale (see `transitions_96`)."""
    sampled = np.asarray(sampled)
    _, first = np.unique(sampled, return_index=True)
    starts = np.sort(first)  # first positions, in order of first appearance
    if starts.size < 2:
        # the reference indexes transitions[1] and would crash here
        raise ProtocolError(
            f"only one sub-action category ({sampled[0]}) on the {sampled.size}-frame scale; "
            "the second step is missing"
        )
    return int(starts[1]) - 1, int(starts[-1]) - 1


def transitions_96(
    frame_labels: np.ndarray, num_frames: int = NUM_FRAMES, *, start_frame: int = 0
) -> tuple[int, int]:
    """The two step transitions on the `num_frames` scale, as the reference loader computes them.

    Labels are sampled at the protocol positions; categories are ordered by first appearance;
    t1 = first position of the 2nd category - 1, t2 = first position of the last category - 1.
    With exactly two categories t1 == t2. Raises ProtocolError when only one category remains.
    `start_frame` (the dive's absolute first frame) matters only through rounding; see
    `sample_indices`.
    """
    return transitions_from_sampled(sampled_frame_labels(frame_labels, num_frames, start_frame=start_frame))


def label_change_positions(frame_labels: np.ndarray) -> np.ndarray:
    """Positions i (relative) where label[i] != label[i-1]; the release's transit frames are these - 1."""
    labels = np.asarray(frame_labels)
    return np.flatnonzero(labels[1:] != labels[:-1]) + 1
