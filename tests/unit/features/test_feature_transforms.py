"""The reference test transform: resize, centre crop, flip, normalisation, snippet layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from aqa.features import transforms as T


def _two_colour_jpeg(path, height=64, width=128):
    img = np.zeros((height, width, 3), np.uint8)
    img[:, : width // 2] = (200, 30, 30)  # left half red
    img[:, width // 2:] = (20, 40, 220)  # right half blue
    Image.fromarray(img).save(path, quality=95)
    return path


def test_load_resized_squeezes_to_height_width_bilinear(tmp_path):
    path = _two_colour_jpeg(tmp_path / "00001.jpg")
    out = T.load_resized(path, (200, 112))
    assert out.shape == (200, 112, 3) and out.dtype == np.uint8
    # colours survive away from the edge; left stays red, right stays blue
    assert np.abs(out[100, 10].astype(int) - (200, 30, 30)).max() <= 4
    assert np.abs(out[100, 100].astype(int) - (20, 40, 220)).max() <= 4
    # exactly PIL's bilinear resize to (w=112, h=200), the reference's operation
    ref = np.asarray(Image.open(path).convert("RGB").resize((112, 200), Image.BILINEAR))
    np.testing.assert_array_equal(out, ref)


def test_load_resized_names_a_broken_file(tmp_path):
    bad = tmp_path / "00003.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(T.FrameError, match="00003.jpg"):
        T.load_resized(bad, (200, 112))


def test_center_crop_offsets_match_reference():
    assert T.center_crop_box(200, 112, 112) == (44, 0)
    assert T.center_crop_box(120, 130, 112) == (4, 9)  # round(4.0), round(9.0)
    with pytest.raises(ValueError, match="larger"):
        T.center_crop_box(100, 112, 112)


def test_crop_views_original_and_flipped():
    frames = np.arange(2 * 200 * 112 * 3, dtype=np.int64).reshape(2, 200, 112, 3).astype(np.uint8)
    views = T.crop_views(frames, 112, flip_view=True)
    assert views.shape == (2, 2, 112, 112, 3)
    np.testing.assert_array_equal(views[0], frames[:, 44:156, :])
    np.testing.assert_array_equal(views[1], frames[:, 44:156, ::-1])
    assert T.crop_views(frames, 112, flip_view=False).shape == (1, 2, 112, 112, 3)


def test_flip_of_asymmetric_crop_flips_the_resized_frame_first():
    # width 115 -> left offset round(1.5) = 2; the flipped view crops the flipped frame
    frames = np.random.default_rng(0).integers(0, 255, (1, 112, 115, 3), dtype=np.uint8)
    views = T.crop_views(frames, 112, flip_view=True)
    np.testing.assert_array_equal(views[1, 0], frames[0, :, ::-1][:, 2:114])


def test_normalize_imagenet_and_i3d_numbers():
    clips = torch.zeros(1, 3, 2, 2, 2, dtype=torch.uint8)
    clips[:, 0] = 255
    x = T.normalize(clips, "imagenet")
    assert x.dtype == torch.float32
    torch.testing.assert_close(x[0, 0, 0, 0, 0], torch.tensor((1 - 0.485) / 0.229))
    torch.testing.assert_close(x[0, 1, 0, 0, 0], torch.tensor(-0.456 / 0.224))
    torch.testing.assert_close(x[0, 2, 0, 0, 0], torch.tensor(-0.406 / 0.225))
    y = T.normalize(clips, "i3d")
    assert y[0, 0].eq(1).all() and y[0, 1:].eq(-1).all()
    with pytest.raises(ValueError, match="normalization"):
        T.normalize(clips, "zscore")


def test_snippet_starts_are_0_to_80():
    assert T.snippet_starts(96, 16, 10, 9) == [0, 10, 20, 30, 40, 50, 60, 70, 80]
    with pytest.raises(ValueError, match="need 97 frames"):
        T.snippet_starts(96, 17, 10, 9)


def test_to_snippets_layout_is_view_major_and_frame_exact():
    views = np.zeros((2, 96, 4, 4, 3), np.uint8)
    views[0] = np.arange(96, dtype=np.uint8)[:, None, None, None]  # value = frame position
    views[1] = 100 + views[0]
    clips = T.to_snippets(views, T.snippet_starts(96, 16, 10, 9), 16)
    assert clips.shape == (18, 3, 16, 4, 4) and clips.dtype == torch.uint8
    for s in range(9):
        assert clips[s, 0, :, 0, 0].tolist() == list(range(10 * s, 10 * s + 16))
        assert clips[9 + s, 2, :, 0, 0].tolist() == list(range(100 + 10 * s, 100 + 10 * s + 16))
