"""Dataset facts, one home each: class names, lighting names, frame rates, sensor size, the 68-point
landmark template.

Dependency-free (numpy only) so that every layer may import it: the preprocessing, the shard builders,
the synthetic generator, the input pipelines and ``fer_jax.models`` (which otherwise imports no data
code; it needs the landmark count and the template that frames without landmarks are filled with).

A built dataset's manifest (``class_names``, ``preprocessing``) is what a run reads; these constants are
what the builders write there and what the generator imitates.
"""

from __future__ import annotations

import numpy as np

# -- DFEW (paper 1) ---------------------------------------------------------------------------------------
# DFEW's label order (0-based here; DFEW's CSVs are 1-based)
DFEW_CLASS_NAMES: tuple[str, ...] = ("Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear")
# Class counts of the 11,697 single-labelled clips (fold 1 train + test, REFERENCES.md), same order: the
# class balance the synthetic generator imitates
DFEW_CLASS_COUNTS: tuple[int, ...] = (2445, 1894, 2669, 2173, 1469, 145, 902)
# Frame rate assumed for DFEW's clips (event simulation, the generator's videos); DFEW's frame folders do
# not record one
DFEW_FPS = 25.0

# -- SEE / DSEE (paper 2) ---------------------------------------------------------------------------------
# SEE folders sorted (what a folder-per-class loader enumerates); a valid emotion.json "labels" list wins.
SEE_CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
LIGHTING_NAMES: tuple[str, ...] = ("normal", "overexposed", "low", "hdr")
SEE_FPS = 30.0  # DAVIS346 intensity frames
SEE_SENSOR_HW: tuple[int, int] = (260, 346)  # DAVIS346, (height, width)

# -- 68-point landmarks (iBUG-68 order) -------------------------------------------------------------------
NUM_LANDMARKS = 68
# Margin of the face crop on each side, as a fraction of the detector's face box
# (``fer_jax.preprocess.face.align_matrix``); the template below lives in that crop.
FACE_MARGIN = 0.2


def _template_in_box() -> np.ndarray:
    """A symmetric mean-face drawn by hand in [0, 1] of a Haar face box (x right, y down), ``(68, 2)``.

    Written from face proportions (eyes at 0.40 of the box height, mouth at 0.80, chin just below the box),
    not copied from a fitted shape model: it is a stand-in when no landmark source is given.
    """
    pts = np.zeros((NUM_LANDMARKS, 2), np.float64)
    phi = np.linspace(0.0, np.pi, 17)
    pts[0:17] = np.stack([0.5 - 0.42 * np.cos(phi), 0.40 + 0.62 * np.sin(phi)], -1)
    bx = np.linspace(0.17, 0.43, 5)
    pts[17:22] = np.stack([bx, 0.27 - 0.03 * np.sin(np.linspace(0, np.pi, 5))], -1)
    pts[22:27] = np.stack([1.0 - bx[::-1], 0.27 - 0.03 * np.sin(np.linspace(0, np.pi, 5))], -1)
    pts[27:31] = np.stack([np.full(4, 0.5), np.array([0.38, 0.45, 0.52, 0.59])], -1)
    pts[31:36] = [[0.41, 0.64], [0.45, 0.66], [0.5, 0.67], [0.55, 0.66], [0.59, 0.64]]
    right_eye = [[0.225, 0.40], [0.28, 0.37], [0.34, 0.37], [0.395, 0.40], [0.34, 0.425], [0.28, 0.425]]
    pts[36:42] = right_eye
    # left eye: mirror image, listed from the inner corner clockwise as iBUG does
    pts[42:48] = [[1 - x, y] for x, y in (right_eye[3], right_eye[2], right_eye[1], right_eye[0])] + [
        [1 - right_eye[5][0], right_eye[5][1]],
        [1 - right_eye[4][0], right_eye[4][1]],
    ]
    pts[48:60] = [
        [0.35, 0.80], [0.40, 0.77], [0.46, 0.755], [0.5, 0.76], [0.54, 0.755], [0.60, 0.77],
        [0.65, 0.80], [0.60, 0.84], [0.54, 0.86], [0.5, 0.865], [0.46, 0.86], [0.40, 0.84],
    ]  # fmt: skip
    pts[60:68] = [
        [0.37, 0.80], [0.44, 0.79], [0.5, 0.79], [0.56, 0.79],
        [0.63, 0.80], [0.56, 0.81], [0.5, 0.815], [0.44, 0.81],
    ]  # fmt: skip
    return pts


# The ONE 68-point template: (68, 2) float32, (x, y) in [0, 1] of the aligned face crop that
# ``face.align_matrix`` produces (box + margin). What alignment targets, what the pipeline stores for
# frames without landmarks, and what the models fill all-zero landmarks with.
TEMPLATE_68 = ((_template_in_box() + FACE_MARGIN) / (1.0 + 2.0 * FACE_MARGIN)).astype(np.float32)
TEMPLATE_68.setflags(write=False)

__all__ = [
    "DFEW_CLASS_NAMES",
    "DFEW_CLASS_COUNTS",
    "DFEW_FPS",
    "FACE_MARGIN",
    "LIGHTING_NAMES",
    "NUM_LANDMARKS",
    "SEE_CLASS_NAMES",
    "SEE_FPS",
    "SEE_SENSOR_HW",
    "TEMPLATE_68",
]
