"""Face detection, eye-based tilt correction, cropping and enhancement for one frame (paper 1, Section 3).

- Detection: OpenCV's Haar frontal-face cascade, largest face; when none is found the frame is also tried
  rotated by +-20 and +-40 degrees (the frontal cascade misses faces tilted beyond about 15 degrees).
- Tilt: the two eyes found by the Haar eye cascade in the upper face; the roll is the angle of the line
  between them (degrees, image coordinates with y down, clockwise positive).
- Crop: one affine warp (rotate about the face centre by the roll, scale the face box plus
  ``FACE_MARGIN`` on every side to the output size), so landmarks follow the same 2x3 matrix.
- Enhancement: CLAHE on the L channel of Lab, a bilateral filter and a light unsharp mask.

Cascades come from ``cv2.data.haarcascades`` (opencv-python-headless < 5 ships them).
"""

from __future__ import annotations

import dataclasses
import math
import os

import cv2
import numpy as np

from fer_jax.data.constants import FACE_MARGIN, NUM_LANDMARKS, TEMPLATE_68

Box = tuple[int, int, int, int]  # x, y, w, h in pixels

_RETRY_ANGLES = (20.0, -20.0, 40.0, -40.0)
_DETECT_MAX_SIDE = 512  # detection runs on a copy downscaled to this side: Haar cost grows with pixels


@dataclasses.dataclass
class FaceFit:
    """Where the face of one frame is: centre (x, y) and box side in source pixels, roll in degrees."""

    center: tuple[float, float]
    side: float
    roll: float | None  # None when the eyes were not found


class FaceDetector:
    """Haar face + eye cascades. Cascades are loaded lazily per process (cv2 objects do not pickle)."""

    def __init__(self, *, min_face_frac: float = 0.12, cascade_dir: str | None = None):
        self.min_face_frac = min_face_frac
        self.cascade_dir = cascade_dir or cv2.data.haarcascades
        self._face = None
        self._eye = None
        self._pid = None

    def __getstate__(self):
        return {"min_face_frac": self.min_face_frac, "cascade_dir": self.cascade_dir}

    def __setstate__(self, state):
        self.__init__(**state)

    def _load(self) -> None:
        if self._pid == os.getpid():
            return
        face = cv2.CascadeClassifier(os.path.join(self.cascade_dir, "haarcascade_frontalface_default.xml"))
        eye = cv2.CascadeClassifier(os.path.join(self.cascade_dir, "haarcascade_eye.xml"))
        if face.empty() or eye.empty():
            raise ValueError(f"Haar cascades missing in {self.cascade_dir} (needs opencv-python-headless<5)")
        self._face, self._eye, self._pid = face, eye, os.getpid()

    def detect_face(self, gray: np.ndarray, near: FaceFit | None = None) -> Box | None:
        """Largest face box in a grey image, or None. ``near`` (the previous frame's face, upright) limits
        the search to a window around it and to sizes within 0.7x..1.4x of it: a tracker's prior that
        cuts the cost several times over a full multi-scale search."""
        self._load()
        h, w = gray.shape
        x0 = y0 = 0
        min_side_px = None
        if near is not None and not near.roll:
            half = near.side * 1.1
            x0, y0 = max(0, int(near.center[0] - half)), max(0, int(near.center[1] - half))
            x1, y1 = min(w, int(near.center[0] + half)), min(h, int(near.center[1] + half))
            gray = gray[y0:y1, x0:x1]
            h, w = gray.shape
            min_side_px = 0.7 * near.side
            max_side_px = 1.4 * near.side
            if min(h, w) < min_side_px:
                return None
        scale = min(1.0, _DETECT_MAX_SIDE / max(h, w))
        small = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        small = cv2.equalizeHist(small)
        kwargs = {"scaleFactor": 1.1, "minNeighbors": 4}
        if min_side_px is None:
            kwargs["minSize"] = (max(20, int(self.min_face_frac * min(small.shape))),) * 2
        else:
            kwargs["minSize"] = (max(20, int(min_side_px * scale)),) * 2
            kwargs["maxSize"] = (int(max_side_px * scale) + 1,) * 2
        faces = self._face.detectMultiScale(small, **kwargs)
        if len(faces) == 0:
            return None
        x, y, bw, bh = max(faces, key=lambda b: b[2] * b[3])
        x, y, bw, bh = (int(round(v / scale)) for v in (x, y, bw, bh))
        return x + x0, y + y0, bw, bh

    def detect_roll(self, gray: np.ndarray, box: Box) -> float | None:
        """Roll (degrees) from the two eyes in the upper 60% of ``box``, or None when not both are found."""
        self._load()
        x, y, w, h = box
        x0, y0 = max(0, x), max(0, y)
        roi = gray[y0 : y + int(0.6 * h), x0 : x + w]
        if roi.size == 0:
            return None
        # eyes are 0.12..0.4 of the face width: a 120 px ROI and that size band keep the search short
        scale = min(1.0, 120.0 / max(roi.shape))
        small = cv2.resize(roi, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else roi
        min_side = max(8, int(0.12 * w * scale))
        max_side = max(min_side + 1, int(0.4 * w * scale))
        eyes = self._eye.detectMultiScale(
            small, scaleFactor=1.1, minNeighbors=3, minSize=(min_side,) * 2, maxSize=(max_side,) * 2
        )
        if len(eyes) < 2:
            return None
        centres = [
            ((ex + ew / 2) / scale + x0, (ey + eh / 2) / scale + y0, ew * eh) for ex, ey, ew, eh in eyes
        ]
        mid = x + w / 2
        left = [c for c in centres if c[0] < mid]
        right = [c for c in centres if c[0] >= mid]
        if not left or not right:
            return None
        a = max(left, key=lambda c: c[2])
        b = max(right, key=lambda c: c[2])
        roll = math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))
        return roll if abs(roll) <= 45.0 else None


def rotation_about(center: tuple[float, float], angle: float) -> np.ndarray:
    """2x3 matrix rotating by ``angle`` degrees (cv2 convention: counter-clockwise on screen) about centre."""
    return cv2.getRotationMatrix2D((float(center[0]), float(center[1])), float(angle), 1.0)


def _invert(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, np.float64))


def fit_face(rgb: np.ndarray, detector: FaceDetector, near: FaceFit | None = None) -> FaceFit | None:
    """Finds the largest face and its roll; None when there is none.

    The frame is tried as is, then rotated by +-20 and +-40 degrees; the first detection whose eyes are
    found wins (a face box without two eyes is often a false positive), else the first detection at all.
    """
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    if near is not None and abs(near.roll or 0.0) < 15.0:
        box = detector.detect_face(gray, near=dataclasses.replace(near, roll=None))
        if box is not None:
            roll = detector.detect_roll(gray, box)
            if roll is not None:
                x, y, bw, bh = box
                return FaceFit((x + bw / 2, y + bh / 2), float(max(bw, bh)), roll)
    fallback = None
    for a in (0.0, *_RETRY_ANGLES):
        if a == 0.0:
            g, rot = gray, None
        else:
            rot = rotation_about((w / 2, h / 2), a)
            g = cv2.warpAffine(gray, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        box = detector.detect_face(g)
        if box is None:
            continue
        bx, by, bw, bh = box
        centre = np.array([bx + bw / 2, by + bh / 2, 1.0])
        if rot is not None:
            centre = np.append(_invert(rot) @ centre, 1.0)
        roll = detector.detect_roll(g, box)
        # a copy turned by `a` counter-clockwise shows the roll lowered by `a`
        fit = FaceFit(
            (float(centre[0]), float(centre[1])), float(max(bw, bh)), None if roll is None else roll + a
        )
        if roll is not None:
            return fit
        if fallback is None:
            fallback = fit if a == 0.0 else dataclasses.replace(fit, roll=a)
    return fallback


def fit_from_landmarks(points: np.ndarray, margin: float = FACE_MARGIN) -> FaceFit | None:
    """The face fit whose crop maps 68 source landmarks ``(68, 2)`` (pixels) closest to ``TEMPLATE_68``.

    A least-squares similarity (Umeyama: rotation, one scale, translation) from the landmarks to the
    template's crop coordinates, expressed as the ``FaceFit`` that :func:`align_matrix` turns back into the
    same similarity. About 1000x cheaper than the Haar search, and steadier across frames; None when the
    points are degenerate (all equal, non-finite).
    """
    src = np.asarray(points, np.float64)
    if src.shape != (NUM_LANDMARKS, 2) or not np.all(np.isfinite(src)):
        return None
    dst = TEMPLATE_68.astype(np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = (xs**2).sum() / len(src)
    if var_s < 1e-9:
        return None
    # complex-number form of the 2-D similarity: dst ~ a * src + t with a = s * exp(i * phi)
    zs, zd = xs[:, 0] + 1j * xs[:, 1], xd[:, 0] + 1j * xd[:, 1]
    a = (np.conj(zs) * zd).sum() / (np.abs(zs) ** 2).sum()
    s = abs(a)
    # y points down, so a counter-clockwise angle in cv2's convention is -arg(a) in these coordinates
    roll = -math.degrees(math.atan2(a.imag, a.real))
    # the source point that lands on the crop centre (0.5, 0.5): invert dst = a * (src - mu_s) + mu_d
    zc = (0.5 + 0.5j - (mu_d[0] + 1j * mu_d[1])) / a + (mu_s[0] + 1j * mu_s[1])
    side = 1.0 / (s * (1.0 + 2.0 * margin))
    return FaceFit((float(zc.real), float(zc.imag)), float(side), float(roll))


def center_fit(height: int, width: int, margin: float = FACE_MARGIN) -> FaceFit:
    """Fallback when no face is found: the central square of the frame fills the crop exactly."""
    return FaceFit((width / 2, height / 2), min(height, width) / (1.0 + 2.0 * margin), 0.0)


def align_matrix(fit: FaceFit, size: int, margin: float = FACE_MARGIN) -> np.ndarray:
    """2x3 matrix (source pixels -> output pixels) that levels the eyes and maps the face box plus
    ``margin`` of its side on each side onto a ``size x size`` crop."""
    crop_side = fit.side * (1.0 + 2.0 * margin)
    m = cv2.getRotationMatrix2D(fit.center, float(fit.roll or 0.0), size / crop_side)
    m[0, 2] += size / 2 - fit.center[0]
    m[1, 2] += size / 2 - fit.center[1]
    return m


def warp(rgb: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Applies ``matrix`` to an image, ``(size, size, C)`` out; area-like filtering when shrinking a lot."""
    scale = math.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2])))
    src = rgb
    if scale < 0.5:
        # pre-shrink so bilinear sampling does not alias; fold the shrink into the matrix
        f = 2.0 * scale
        src = cv2.resize(rgb, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        matrix = np.asarray(matrix, np.float64).copy()
        sx, sy = rgb.shape[1] / src.shape[1], rgb.shape[0] / src.shape[0]
        matrix[:, 0] *= sx
        matrix[:, 1] *= sy
    return cv2.warpAffine(src, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def enhance(
    rgb: np.ndarray,
    *,
    clahe_clip: float = 2.0,
    clahe_grid: int = 8,
    bilateral_d: int = 5,
    bilateral_sigma: float = 40.0,
    unsharp_sigma: float = 1.0,
    unsharp_amount: float = 0.5,
) -> np.ndarray:
    """Paper 1's enhancement: CLAHE (on lightness), bilateral smoothing, light unsharp mask; uint8 in/out."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=clahe_clip, tileGridSize=(clahe_grid, clahe_grid))
    lab[..., 0] = clahe.apply(lab[..., 0])
    out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    out = cv2.bilateralFilter(out, bilateral_d, bilateral_sigma, bilateral_sigma)
    blur = cv2.GaussianBlur(out, (0, 0), unsharp_sigma)
    return cv2.addWeighted(out, 1.0 + unsharp_amount, blur, -unsharp_amount, 0)
