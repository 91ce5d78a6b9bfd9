"""aqa.data.masks on hand-made masks: where a known pixel lands after flip / squeeze / crop, the
binarisation threshold, the same geometry as the frames', validation (one error per case), packing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aqa.data import masks as MK
from aqa.errors import AqaError
from aqa.features import transforms as T
from aqa.train.frames import FrameGeometry, load_clip

RESIZE, CROP = (200, 112), 112
GEOMETRY = FrameGeometry(num_frames=96, snippet_length=16, snippet_stride=10, num_snippets=9, resize=RESIZE,
                         crop=CROP, normalization="imagenet")


def _save(path: Path, array: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path, format=fmt)
    return path


def _dive(root: Path, frames: range, size=(224, 400), value=0) -> Path:
    """A mask folder <root>/v/0 with one (lossless) mask per frame number."""
    for n in frames:
        _save(root / "v" / "0" / f"{n:05d}.jpg", np.full((size[1], size[0]), value, np.uint8))
    return root


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(("flip", "top", "expected"), [
    (False, 44, (56, 30)),    # the centre crop of evaluation and the cache: rows 44..155
    (True, 44, (56, 81)),     # flipped: column 30 -> 111 - 30
    (False, 0, (100, 30)),    # training crops at both ends of 0..88
    (True, 88, (12, 81)),
])
def test_a_known_pixel_lands_where_the_protocol_puts_it(tmp_path, flip, top, expected):
    # 224 x 400 is twice the squeezed 112 x 200: PIL's bilinear averages each 2 x 2 input block with
    # its neighbours (weights 1/8, 3/8, 3/8, 1/8 per axis), so one bright 2 x 2 block gives exactly one
    # pixel >= 128 (255 * 0.75^2 = 143) at half its coordinates, its neighbours 255 * 0.75 / 8 = 24.
    mask = np.zeros((400, 224), np.uint8)
    mask[200:202, 60:62] = 255          # squeezed (100, 30)
    path = _save(tmp_path / "m.jpg", mask, fmt="PNG")
    clip = MK.mask_clip([path], (224, 400), RESIZE, CROP, flip, top, 0)
    assert clip.shape == (1, CROP, CROP) and clip.dtype == bool
    assert list(zip(*np.nonzero(clip[0]))) == [expected]
    squeezed = MK.load_squeezed_mask(path, (224, 400), RESIZE, flip)
    assert squeezed.max() == 143 and np.sort(squeezed.ravel())[-2] == 24


def test_binarised_at_128_the_references_round_of_v_over_255():
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert (MK.binarise(levels) == (np.round(levels / 255.0) == 1)).all()
    assert not MK.binarise(np.uint8(127)) and MK.binarise(np.uint8(128))


@pytest.mark.parametrize("value", [127, 128])
def test_threshold_through_the_whole_transform(tmp_path, value):
    path = _save(tmp_path / "m.jpg", np.full((200, 112), value, np.uint8))   # already squeezed: no resize
    clip = MK.mask_clip([path, path], (112, 200), RESIZE, CROP, False, 44, 0)
    assert clip.shape == (2, CROP, CROP) and clip.all() == (value == 128) and clip.any() == (value == 128)


@pytest.mark.parametrize(("flip", "top"), [(False, 44), (True, 44), (False, 7), (True, 81)])
def test_masks_take_exactly_the_frames_geometry(tmp_path, flip, top):
    """A frame that is its mask in gray gives, through the frames' own load_clip, the mask's pixels."""
    rng = np.random.default_rng(top)
    paths, frames = [], []
    for i in range(3):
        mask = (rng.random((256, 456)) < 0.3).astype(np.uint8) * 255
        mask[rng.integers(0, 200):, :rng.integers(50, 400)] = 255
        paths.append(_save(tmp_path / "m" / f"{i:05d}.jpg", mask))
        frames.append(_save(tmp_path / "f" / f"{i:05d}.jpg", np.repeat(mask[..., None], 3, axis=2), fmt="PNG"))
    masks = MK.mask_clip(paths, (456, 256), RESIZE, CROP, flip, top, 0)
    clip = load_clip(frames, GEOMETRY, flip, top, 0).numpy()     # (3, T, crop, crop) uint8
    assert (masks == (clip[0] >= 128)).all() and masks.any() and not masks.all()


def test_cache_views_are_the_centre_crop_and_the_flipped_squeeze(tmp_path):
    rng = np.random.default_rng(1)
    paths = [_save(tmp_path / f"{i:05d}.jpg", (rng.random((256, 456)) < 0.5).astype(np.uint8) * 255)
             for i in range(2)]
    views = MK.mask_views(paths + paths[:1], (456, 256), RESIZE, CROP, flip_view=True)
    assert views.shape == (2, 3, CROP, CROP)
    top, left = T.center_crop_box(*RESIZE, CROP)
    assert (views[0] == MK.mask_clip(paths + paths[:1], (456, 256), RESIZE, CROP, False, top, left)).all()
    # the cache flips the squeezed mask, training flips before the squeeze: the same pixels
    assert (views[1] == MK.mask_clip(paths + paths[:1], (456, 256), RESIZE, CROP, True, top, left)).all()


# ----------------------------------------------------------------------------- files and validation


def test_protocol_masks_are_the_protocol_frames(tmp_path):
    root = _dive(tmp_path, range(10, 60), size=(8, 6))
    paths = MK.dive_mask_paths(root, "v", 0, 10, 59, 96)
    assert len(paths) == 96 and paths[0].name == "00010.jpg" and paths[-1].name == "00059.jpg"
    from aqa.data.protocol import sample_frame_numbers

    assert [int(p.stem) for p in paths] == sample_frame_numbers(10, 59, 96).tolist()


def _error(call) -> str:
    with pytest.raises(MK.MaskError) as err:
        call()
    assert isinstance(err.value, AqaError) and "\n" not in str(err.value)
    return str(err.value)


def test_a_dive_without_a_mask_folder_names_it(tmp_path):
    message = _error(lambda: MK.dive_mask_paths(tmp_path, "v", 3, 0, 9, 96))
    assert message.startswith(f"{tmp_path / 'v' / '3'}: no mask folder")


def test_a_missing_mask_names_the_file(tmp_path):
    root = _dive(tmp_path, range(0, 20), size=(8, 6))
    (root / "v" / "0" / "00007.jpg").unlink()
    message = _error(lambda: MK.dive_mask_paths(root, "v", 0, 0, 19, 96))
    assert message.startswith(f"{root / 'v' / '0' / '00007.jpg'}: mask missing (1 of the 20 frames")


def test_a_mask_outside_the_dive_names_the_file(tmp_path):
    root = _dive(tmp_path, range(0, 21), size=(8, 6))
    message = _error(lambda: MK.dive_mask_paths(root, "v", 0, 0, 19, 96))
    assert message.startswith(f"{root / 'v' / '0' / '00020.jpg'}: outside the dive's frames 0..19")


def test_an_unreadable_mask_names_the_file(tmp_path):
    bad = tmp_path / "00003.jpg"
    bad.write_bytes(b"not a jpeg")
    assert _error(lambda: MK.read_mask(bad, (8, 6))).startswith(f"{bad}: cannot decode mask")
    truncated = _save(tmp_path / "t.jpg", np.zeros((64, 64), np.uint8), fmt="JPEG")
    truncated.write_bytes(truncated.read_bytes()[:200])
    assert _error(lambda: MK.read_mask(truncated, (64, 64))).startswith(f"{truncated}: cannot decode mask")
    assert _error(lambda: MK.read_mask(tmp_path / "none.jpg", (8, 6))).endswith("none.jpg: mask missing")


def test_a_coloured_mask_is_refused_and_a_gray_rgb_mask_converted(tmp_path):
    gray = np.zeros((6, 8), np.uint8)
    gray[2:4, 3:6] = 255
    rgb_gray = _save(tmp_path / "g.jpg", np.repeat(gray[..., None], 3, axis=2), fmt="PNG")
    assert np.array_equal(np.asarray(MK.read_mask(rgb_gray, (8, 6))), gray)
    coloured = np.zeros((6, 8, 3), np.uint8)
    coloured[2:4, 3:6] = (255, 0, 0)
    red = _save(tmp_path / "red.jpg", coloured, fmt="PNG")
    assert _error(lambda: MK.read_mask(red, (8, 6))).startswith(f"{red}: a coloured RGB mask (channels differ by up to 255")
    rgba = _save(tmp_path / "a.jpg", np.zeros((6, 8, 4), np.uint8), fmt="PNG")
    assert "mode 'RGBA'" in _error(lambda: MK.read_mask(rgba, (8, 6)))
    binary = tmp_path / "b.png"
    Image.fromarray(gray > 0).save(binary)    # mode '1'
    assert np.array_equal(np.asarray(MK.read_mask(binary, (8, 6))), gray)


def test_a_mask_of_another_field_of_view_is_refused(tmp_path):
    path = _save(tmp_path / "m.jpg", np.zeros((256, 400), np.uint8))
    message = _error(lambda: MK.read_mask(path, (456, 256)))
    assert message == f"{path}: mask is 400x256, its frame 456x256 (another field of view: the mask would not " \
                      "lie on the frame after the squeeze)"
    # the same field of view at another resolution (1280 x 720 behind 456 x 256 frames, ffmpeg's even width)
    big = _save(tmp_path / "big.jpg", np.zeros((720, 1280), np.uint8))
    assert MK.read_mask(big, (456, 256)).size == (1280, 720)


# ----------------------------------------------------------------------------- packing


def test_pack_and_unpack_a_dives_masks():
    rng = np.random.default_rng(0)
    masks = rng.random((2, 96, 112, 112)) < 0.2
    packed = MK.pack_masks(masks)
    assert packed.shape == (2, 96, 112 * 112 // 8) and packed.dtype == np.uint8
    assert packed[0].nbytes == 150_528
    assert (MK.unpack_masks(packed, (112, 112)) == masks).all()
    odd = rng.random((3, 5, 7)) < 0.5   # 35 pixels: the last byte is padded
    assert (MK.unpack_masks(MK.pack_masks(odd), (5, 7)) == odd).all()
    # row-major, the first pixel in the high bit
    one = np.zeros((1, 8, 8), bool)
    one[0, 0, 1] = True
    assert MK.pack_masks(one)[0, 0] == 0b0100_0000
    with pytest.raises(ValueError, match="bool"):
        MK.pack_masks(masks.astype(np.uint8))
    with pytest.raises(ValueError, match="do not hold"):
        MK.unpack_masks(packed, (112, 111))
