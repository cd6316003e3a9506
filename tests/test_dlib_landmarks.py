"""dlib's 68-point landmarks (the ``[landmarks]`` extra, part of ``[dev]``): on a real photograph
(scikit-image's astronaut), through a rotation, over a streamed clip, and as ``data_prep.build``'s default."""

import cv2
import numpy as np
import pytest
import skimage

from data_prep import build
from fer_jax.data.manifest import load_manifest
from fer_jax.preprocess import dlib_landmarks
from fer_jax.preprocess.clip import FaceRecordSettings, face_landmarks, make_face_record
from fer_jax.preprocess.face import rotation_about
from fer_jax.preprocess.landmarks import TEMPLATE_68, transform_points
from tests.test_preprocess_face import ASTRONAUT_EYES  # pupil centres read off the image by hand


@pytest.fixture(scope="module")
def landmarker():
    return dlib_landmarks.get_landmarker()


def _eye_angle(points: np.ndarray) -> float:
    """Degrees of the line from the image-left eye (iBUG 36-41) to the image-right eye (42-47)."""
    d = points[42:48].mean(0) - points[36:42].mean(0)
    return float(np.degrees(np.arctan2(d[1], d[0])))


def test_astronaut_points_lie_on_her_face(landmarker):
    img = skimage.data.astronaut()
    boxes = landmarker.detect(img)
    assert len(boxes) == 1
    left, top, right, bottom = boxes[0]
    pts = landmarker(img)
    assert pts.shape == (68, 2) and pts.dtype == np.float32
    # inside the detected face (dlib's box is tight: the jaw line may pass it by a few pixels)
    pad = 0.15 * (right - left)
    assert np.all(pts[:, 0] > left - pad) and np.all(pts[:, 0] < right + pad)
    assert np.all(pts[:, 1] > top - pad) and np.all(pts[:, 1] < bottom + pad)
    # the eye points on the eyes: each eye's centre within 4 px (a tenth of the 44-px eye distance)
    np.testing.assert_allclose(pts[36:42].mean(0), ASTRONAUT_EYES[0], atol=4.0)
    np.testing.assert_allclose(pts[42:48].mean(0), ASTRONAUT_EYES[1], atol=4.0)
    # the mouth below the eyes and the nose tip between them
    assert pts[48:68, 1].min() > pts[36:48, 1].max() + 20
    assert pts[36:48, 1].max() < pts[33, 1] < pts[48:68, 1].min()


@pytest.mark.parametrize("angle", [15.0, -15.0])
def test_turned_face_keeps_its_eye_line(landmarker, angle):
    img = skimage.data.astronaut()
    rot = rotation_about((256, 256), angle)
    turned = cv2.warpAffine(img, rot, (512, 512), borderMode=cv2.BORDER_REPLICATE)
    eyes = transform_points(ASTRONAUT_EYES, rot)
    want = float(np.degrees(np.arctan2(*(eyes[1] - eyes[0])[::-1])))
    assert abs(want) > 10  # the input really is turned
    pts = landmarker(turned)
    assert pts is not None
    assert abs(_eye_angle(pts) - want) < 5.0, (_eye_angle(pts), want)


def test_clip_landmarks_reads_a_stream_once_and_fills_faceless_frames(landmarker):
    face = skimage.data.astronaut()
    blank = np.full_like(face, 128)
    frames = [blank, face, blank, face]
    reads = []

    def stream():  # a one-pass iterator, as predict streams a video
        for i, f in enumerate(frames):
            reads.append(i)
            yield f

    pts, found = dlib_landmarks.clip_landmarks(landmarker, stream())
    assert reads == [0, 1, 2, 3] and found == 2 and pts.shape == (4, 68, 2)
    np.testing.assert_array_equal(pts[0], pts[1])  # before the first face: its landmarks
    np.testing.assert_allclose(pts[3], pts[1])
    # a faceless frame is fitted in the last face's box: points stay near it
    assert np.abs(pts[2] - pts[1]).mean() < 20
    assert dlib_landmarks.clip_landmarks(landmarker, [blank, blank]) == (None, 0)


def test_dlib_build_setting_aligns_the_face_onto_the_template():
    img = skimage.data.astronaut()
    settings = FaceRecordSettings(frames=2, size=64, landmarks="dlib", align="landmarks", enhance=False)
    assert settings.per_frame_landmarks
    lms, notes = face_landmarks([img, img], settings)
    assert notes == [] and lms.shape == (2, 68, 2)
    rec = make_face_record([img, img], settings, landmarks=lms)
    # the similarity fit maps the detected points close to the template's (in [0, 1] of the crop)
    assert np.abs(rec["landmarks"] - TEMPLATE_68).mean() < 0.03
    blank = np.full_like(img, 128)
    lms, notes = face_landmarks([blank], settings)
    assert lms is None and notes == ["dlib found no face; used the template"]


def _settings(tmp_path, *extra):
    argv = ["--dataset", "dfew", "--root", str(tmp_path), "--out", str(tmp_path / "out"), *extra]
    return build._settings(build._parse(argv))


def test_build_defaults_to_dlib_and_falls_back_to_the_template_loudly(tmp_path, monkeypatch):
    s = _settings(tmp_path)
    assert (s["landmarks"], s["align"]) == ("dlib", "landmarks") and "landmarks_warning" not in s
    monkeypatch.setattr(dlib_landmarks, "available", lambda: False)
    s = _settings(tmp_path)
    assert (s["landmarks"], s["align"]) == ("template", "detector")
    assert "AU analysis is unavailable" in s["landmarks_warning"]
    # an explicit choice is kept as given, with no warning
    s = _settings(tmp_path, "--landmarks", "template")
    assert s["landmarks"] == "template" and "landmarks_warning" not in s
    with pytest.raises(build.UsageError, match="dlib"):
        _settings(tmp_path, "--landmarks", "dlib")
    monkeypatch.undo()
    with pytest.raises(build.UsageError, match="no dlib shape-predictor file"):
        _settings(tmp_path, "--landmarks", f"dlib:{tmp_path / 'missing.dat'}")


def test_template_fallback_is_recorded_in_the_manifest(dfew_raw, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dlib_landmarks, "available", lambda: False)
    out = tmp_path / "t"
    argv = ["--dataset", "dfew", "--root", str(dfew_raw), "--out", str(out), "--frames", "2", "--size", "32",
            "--workers", "1", "--quiet"]  # fmt: skip
    assert build.main(argv) == 0
    prep = load_manifest(out)["preprocessing"]
    assert prep["landmarks"] == "template" and "dlib is not installed" in prep["landmarks_warning"]
    assert "WARNING: --landmarks template" in capsys.readouterr().err


def test_dlib_build_of_synthetic_faces(dfew_raw, tmp_path):
    """The default build on the synthesizer's drawn faces: dlib finds most of them (the demo keeps the
    exact landmark files)."""
    out = tmp_path / "d"
    argv = ["--dataset", "dfew", "--root", str(dfew_raw), "--out", str(out), "--frames", "4", "--size", "48",
            "--workers", "1", "--quiet"]  # fmt: skip
    assert build.main(argv) == 0
    m = load_manifest(out)
    assert m["preprocessing"]["landmarks"] == "dlib"
    no_face = [r for r in m["repaired"] if "dlib found no face" in r["reason"]]
    assert len(no_face) <= 2, no_face  # of 14 clips
    assert m["face_found_fraction"] > 0.7


def test_predict_runs_dlib_like_the_builder():
    """A run built with --landmarks dlib gets dlib's landmarks at predict time too (the same dispatch)."""
    from fer_jax import predict

    img = skimage.data.astronaut()
    settings = FaceRecordSettings(frames=1, size=64, landmarks="dlib", align="landmarks")
    lms = predict._face_landmarks(iter([img]), settings, None)
    np.testing.assert_allclose(lms, face_landmarks([img], settings)[0])
