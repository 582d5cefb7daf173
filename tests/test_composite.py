"""Crops, the generator's 6-channel input, and the feathered, colour-matched paste-back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from media_fixtures import face_photo

from rt_f2f.lipsync.composite import (
    Blender,
    MaskShape,
    blend_mask,
    build_input,
    crop_face,
    match_colour,
    output_to_rgb,
)
from rt_f2f.lipsync.facebox import FaceBox


def test_crop_is_96_square_of_the_box():
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:150, 100:180] = (255, 0, 0)
    crop = crop_face(image, FaceBox(100, 50, 180, 150))
    assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
    assert (crop == (255, 0, 0)).all()


def test_input_masks_the_lower_half_and_is_bgr():
    faces = np.zeros((2, 96, 96, 3), np.uint8)
    faces[..., 0] = 200  # red in RGB
    faces[1, ..., 2] = 100
    x = build_input(faces)
    assert x.shape == (2, 6, 96, 96) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 2, :48], 200 / 255)  # masked target, upper half, R is channel 2 in BGR
    assert (x[:, :3, 48:] == 0).all()  # lower half zeroed
    np.testing.assert_allclose(x[:, 5], 200 / 255)  # reference: whole face, R last
    np.testing.assert_allclose(x[1, 3], 100 / 255)  # B first
    refs = np.full_like(faces, 7)
    np.testing.assert_allclose(build_input(faces, refs)[:, 3:], 7 / 255)


def test_output_flips_back_to_rgb():
    pred = np.zeros((1, 3, 96, 96), np.float32)
    pred[:, 0] = 1.0  # blue in BGR
    rgb = output_to_rgb(pred)
    assert rgb.shape == (1, 96, 96, 3)
    assert (rgb[..., 2] == 1.0).all() and (rgb[..., 0] == 0).all()


def test_mask_is_one_at_the_mouth_zero_on_the_border_and_smooth():
    m = blend_mask(120, 100)
    assert m.max() == pytest.approx(1.0)
    assert m[int(0.75 * 120), 50] == pytest.approx(1.0)  # the mouth
    assert m[int(0.25 * 120), 50] < 0.05  # the eyes are left alone
    border = np.concatenate([m[0], m[-1], m[:, 0], m[:, -1]])
    assert border.max() < 1e-3
    # no visible edge: the weight ramps over 10+ pixels (a C1 smoothstep), never in a step
    assert np.abs(np.diff(m, axis=0)).max() < 0.1
    assert np.abs(np.diff(m, axis=1)).max() < 0.1
    with pytest.raises(ValueError):
        MaskShape(cy=0.8, ry=0.3)


def test_paste_changes_nothing_outside_the_box_and_feathers_the_edge():
    image = face_photo(256)
    box = FaceBox(90, 40, 175, 137)
    patch = np.ones((96, 96, 3), np.float32)  # a white face: the largest possible change
    out = Blender(colour_match=False).paste(image, box, patch)
    x1, y1, x2, y2 = box.ints()
    outside = np.ones(image.shape[:2], bool)
    outside[y1:y2, x1:x2] = False
    assert np.array_equal(out[outside], image[outside])  # byte-identical outside the face box
    region_in, region_out = image[y1:y2, x1:x2].astype(int), out[y1:y2, x1:x2].astype(int)
    change = np.abs(region_out - region_in).max(axis=2)
    assert change[int(0.75 * (y2 - y1)), (x2 - x1) // 2] > 60  # the mouth was replaced
    assert change[0].max() <= 1 and change[-1].max() <= 1  # box edges: continuous with the untouched frame
    assert change[:, 0].max() <= 1 and change[:, -1].max() <= 1
    weight = change / np.maximum(1, (255 - region_in).max(axis=2))
    assert np.abs(np.diff(weight[:, (x2 - x1) // 2])).max() < 0.12  # feathered: no step anywhere down the face


def test_paste_keeps_unmasked_pixels_exact_and_input_untouched():
    image = face_photo(128)
    before = image.copy()
    box = FaceBox(30, 10, 100, 90)
    out = Blender().paste(image, box, np.random.default_rng(0).random((96, 96, 3), dtype=np.float32))
    assert np.array_equal(image, before)  # a new frame is returned; the caller's is not modified
    m = Blender().mask(80, 70)
    x1, y1, x2, y2 = box.ints()
    assert np.array_equal(out[y1:y2, x1:x2][m == 0], image[y1:y2, x1:x2][m == 0])
    with pytest.raises(ValueError):
        Blender().paste(image, FaceBox(100, 10, 140, 90), np.zeros((96, 96, 3), np.float32))


def test_colour_matching_moves_the_patch_statistics_to_the_frame():
    rng = np.random.default_rng(0)
    target = np.clip(0.55 + 0.05 * rng.standard_normal((64, 64, 3)), 0, 1).astype(np.float32)
    target[..., 2] *= 0.7  # a warm skin-like tone
    patch = np.clip(0.3 + 0.15 * rng.standard_normal((64, 64, 3)), 0, 1).astype(np.float32)  # too dark, too noisy
    weights = np.ones((64, 64), np.float32)
    matched = match_colour(patch, target, weights)
    lab = [cv2.cvtColor(x, cv2.COLOR_RGB2Lab).reshape(-1, 3) for x in (target, patch, matched)]
    assert np.abs(lab[2].mean(0) - lab[0].mean(0)).max() < 1.5
    assert np.abs(lab[2].mean(0) - lab[0].mean(0)).max() < 0.2 * np.abs(lab[1].mean(0) - lab[0].mean(0)).max()
    assert lab[2][:, 0].std() < lab[1][:, 0].std()  # contrast brought down toward the frame's
