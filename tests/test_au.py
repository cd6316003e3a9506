"""AU analyzer: deformations of the template move the right AU; normalisation invariances."""

import numpy as np
import pytest

from fer_jax.interpret import au
from fer_jax.models.attention import CANONICAL_LANDMARKS


def _clip(t=3):
    return np.repeat(CANONICAL_LANDMARKS[None].astype(np.float64), t, axis=0)


def _idx(name):
    return au.AU_NAMES.index(name)


def test_raised_lip_corners_move_au12():
    clip = _clip()
    clip[1:, [48, 54], 1] -= 0.03
    s = au.au_scores(clip)
    assert np.all(s[0] == 0)
    assert s[2, _idx("AU12")] > 0.05
    assert s[2, _idx("AU12")] == pytest.approx(np.abs(s[2]).max())
    assert abs(s[2, _idx("AU1")]) < 1e-6 and s[2, _idx("AU15")] < 0


def test_jaw_drop_and_brow_raise():
    clip = _clip()
    clip[1:, 5:12, 1] += 0.05  # lower jaw down
    clip[1:, [21, 22], 1] -= 0.03  # inner brows up
    s = au.au_scores(clip)[2]
    assert s[_idx("AU26")] > 0.05 and s[_idx("AU1")] > 0.05 and s[_idx("AU4")] < 0


def test_scores_invariant_to_face_scale_and_position():
    clip = _clip()
    clip[1:, [48, 54], 1] -= 0.03
    moved = clip * 0.5 + 0.2
    np.testing.assert_allclose(au.au_scores(moved), au.au_scores(clip), atol=1e-5)


def test_summary_and_weights():
    clip = _clip()
    clip[2, [48, 54], 1] -= 0.03
    summ = au.clip_summary(au.au_scores(clip))
    assert summ["AU12"]["active"] and summ["AU12"]["peak_frame"] == 2 and not summ["AU2"]["active"]
    batch = np.stack([clip, _clip()])
    np.testing.assert_array_equal(au.au_sample_weights(batch), [1.0, 1.0])
    w = au.au_sample_weights(batch, strength=1.0)
    assert w[1] == pytest.approx(2.0) and w[0] < w[1]


def test_bad_shape_raises():
    with pytest.raises(ValueError):
        au.au_scores(np.zeros((3, 5, 2)))


@pytest.mark.parametrize(
    "source,available", [("template", False), ("none", False), ("dlib", True), ("file:landmarks", True)]
)
def test_au_analysis_is_unavailable_for_template_landmarks(source, available):
    why = au.au_unavailable({"landmarks": source})
    assert (why is None) == available
    if not available:
        assert why.startswith("AU analysis unavailable") and source in why and "\n" not in why
        # the reason is real: template clips measure exactly 0
        assert np.all(au.au_scores(_clip()) == 0)


def test_au_analysis_runs_when_the_landmark_source_is_not_recorded():
    assert au.au_unavailable({}) is None
