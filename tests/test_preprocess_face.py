"""Face alignment, the centre-crop fallback, enhancement and landmarks (on a real photograph)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from fer_jax.preprocess.clip import prepare_eye_clip, prepare_face_clip
from fer_jax.preprocess.face import align_matrix, enhance, fit_from_landmarks, rotation_about
from fer_jax.preprocess.landmarks import FLIP_PERMUTATION_68, TEMPLATE_68, flip_landmarks, transform_points

# Pupil centres in skimage's astronaut.png (512x512), read off the image by hand: image-left eye (the
# subject's right, iBUG 36-41) and image-right eye (iBUG 42-47). Their line is about 2.6 degrees off level.
ASTRONAUT_EYES = np.array([[202.0, 101.0], [246.0, 103.0]])


def _eye_landmarks(eyes: np.ndarray) -> np.ndarray:
    lm = np.zeros((1, 68, 2), np.float32)
    lm[0, 36:42] = eyes[0]
    lm[0, 42:48] = eyes[1]
    return lm


@pytest.mark.parametrize("angle", [20.0, -30.0])
def test_rotated_face_comes_out_upright(angle):
    img = skimage.data.astronaut()
    rot = rotation_about((256, 256), angle)
    tilted = cv2.warpAffine(img, rot, (512, 512), borderMode=cv2.BORDER_REPLICATE)
    eyes = transform_points(ASTRONAUT_EYES, rot)
    tilt_in = np.degrees(np.arctan2(*(eyes[1] - eyes[0])[::-1]))
    assert abs(tilt_in) > 15  # the input really is tilted
    out = prepare_face_clip([tilted], num_frames=1, size=112, landmarks=_eye_landmarks(eyes), enhance=False)
    assert out["face_found"].tolist() == [True]
    left, right = out["landmarks"][0, 36], out["landmarks"][0, 42]
    roll = np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0]))
    assert abs(roll) < 4.0, roll
    # the face is centred: eyes in the middle band, upper half of the crop
    mid = (left + right) / 2
    assert 0.35 < mid[0] < 0.65 and 0.25 < mid[1] < 0.55
    assert out["frames"].shape == (1, 112, 112, 3) and out["frames"].dtype == np.uint8


def test_no_face_falls_back_to_centre_crop_and_landmarks_follow():
    h, w = 120, 200
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[..., 1] = 80
    img[60, 130] = 255  # a marker pixel and a landmark on it
    lm = np.tile(np.array([130.0, 60.0], np.float32), (2, 68, 1))
    out = prepare_face_clip([img, img], num_frames=2, size=60, landmarks=lm, enhance=False)
    assert out["face_found"].tolist() == [False, False]
    # the centre 120x120 square scaled by 1/2: column x maps to (x - 40) / 2
    expected = cv2.resize(img[:, 40:160], (60, 60), interpolation=cv2.INTER_AREA)
    assert np.abs(out["frames"][0].astype(int) - expected.astype(int))[..., :2].mean() < 3
    np.testing.assert_allclose(out["landmarks"][0, 0] * 60, [(130 - 40) / 2, 60 / 2], atol=0.75)


def test_template_is_mirror_symmetric_and_plausible():
    assert TEMPLATE_68.shape == (68, 2) and TEMPLATE_68.min() >= 0 and TEMPLATE_68.max() <= 1
    np.testing.assert_allclose(flip_landmarks(TEMPLATE_68), TEMPLATE_68, atol=1e-6)
    np.testing.assert_array_equal(FLIP_PERMUTATION_68[FLIP_PERMUTATION_68], np.arange(68))
    eyes_y, nose_y, mouth_y, chin_y = (
        TEMPLATE_68[s, 1].mean() for s in (slice(36, 48), slice(31, 36), slice(48, 68), slice(8, 9))
    )
    assert eyes_y < nose_y < mouth_y < chin_y
    assert TEMPLATE_68[36, 0] < TEMPLATE_68[45, 0]  # subject's right eye on the image left


def test_template_used_without_landmark_source():
    img = skimage.data.astronaut()
    out = prepare_face_clip([img], num_frames=3, size=64)
    np.testing.assert_array_equal(out["landmarks"], np.broadcast_to(TEMPLATE_68, (3, 68, 2)))


def test_enhance_raises_contrast_of_a_flat_image():
    rng = np.random.default_rng(0)
    flat = np.clip(110 + 6 * rng.standard_normal((64, 64, 1)).repeat(3, -1), 0, 255).astype(np.uint8)
    flat[:, 32:] += 10
    out = enhance(flat)
    assert out.shape == flat.shape and out.dtype == np.uint8
    assert out[..., 0].std() > 1.5 * flat[..., 0].std()


def test_eye_clip_pairs_modalities_and_resizes():
    rgb = [np.full((96, 128, 3), i, np.uint8) for i in range(10)]
    ev = [np.full((96, 128, 3), 100 + i, np.uint8) for i in range(12)]
    out = prepare_eye_clip(rgb, ev, size=32, num_frames=4)
    assert out["rgb"].shape == (4, 32, 32, 3) and out["event"].shape == (4, 32, 32, 3)
    # the shorter modality (10 frames) decides; frame k pairs with event k
    np.testing.assert_array_equal(out["rgb"][:, 0, 0, 0] + 100, out["event"][:, 0, 0, 0])
    assert out["indices"].max() < 10


@pytest.mark.parametrize("angle,scale,shift", [(17.0, 180.0, (40.0, 70.0)), (-35.0, 90.0, (300.0, 10.0))])
def test_fit_from_landmarks_maps_landmarks_onto_the_template(angle, scale, shift):
    # a face whose 68 points are the template under a known similarity: the crop must undo it exactly
    m = cv2.getRotationMatrix2D((0.0, 0.0), angle, scale)
    m[:, 2] = shift
    src = transform_points(TEMPLATE_68.astype(np.float64), m)
    fit = fit_from_landmarks(src)
    assert fit is not None and abs(fit.roll + angle) < 1e-6
    out = transform_points(src, align_matrix(fit, 64)) / 64
    np.testing.assert_allclose(out, TEMPLATE_68, atol=1e-5)


def test_fit_from_landmarks_rejects_degenerate_points():
    assert fit_from_landmarks(np.full((68, 2), 5.0)) is None
    assert fit_from_landmarks(np.full((68, 2), np.nan)) is None
    assert fit_from_landmarks(np.zeros((5, 2))) is None


def test_landmark_alignment_levels_a_tilted_face_without_the_detector():
    img = skimage.data.astronaut()
    rot = rotation_about((256, 256), 25.0)
    tilted = cv2.warpAffine(img, rot, (512, 512), borderMode=cv2.BORDER_REPLICATE)
    # template landmarks placed on the astronaut's eyes: similarity from template eye centres to the eyes
    t_eyes = np.stack([TEMPLATE_68[36:42].mean(0), TEMPLATE_68[42:48].mean(0)]).astype(np.float64)
    m, _ = cv2.estimateAffinePartial2D(t_eyes, ASTRONAUT_EYES)
    lm = transform_points(transform_points(TEMPLATE_68.astype(np.float64), m), rot)[None].astype(np.float32)

    class NoDetector:  # the landmark path must not call the Haar detector
        def __getattr__(self, name):
            raise AssertionError(f"detector.{name} called")

    out = prepare_face_clip([tilted], num_frames=1, size=64, landmarks=lm, enhance=False, align="landmarks",
                            detector=NoDetector())  # fmt: skip
    np.testing.assert_allclose(out["landmarks"][0], TEMPLATE_68, atol=1e-4)
    assert out["face_found"].tolist() == [True]
    with pytest.raises(ValueError, match="needs landmarks"):
        prepare_face_clip([tilted], num_frames=1, size=64, align="landmarks")
