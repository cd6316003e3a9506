"""Procedural single-eye close-ups for the synthetic SEE: brow, lids, iris and the expression creases.

What a head-mounted event camera sees of an expression (``expressions.py`` tracks): brow height and
tilt (AU1 inner raise, AU2 outer raise, AU4 lowerer: down and pulled inwards with vertical furrows), eye
opening (AU5 upper lid raise, AU7 lid tightener, AU6 / AU10 lower lid pushed up by the cheek, with crow's
feet for AU6), nose-wrinkle creases at the inner corner (AU9), blinks and gaze. Mouth AUs are invisible.

Canonical frame: eye centre at the origin, x towards the outer corner, y down, eye half-width 1. The eye is
drawn on a single-channel uint8 canvas (the DAVIS346 intensity frames are monochrome) with sub-pixel
anti-aliased shapes, so small motions change pixel values smoothly, as they do on a real sensor.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

_SHIFT = 4
_ONE = 1 << _SHIFT


@dataclasses.dataclass
class EyeIdentity:
    """Per-subject eye shape and grey levels."""

    up: float  # upper lid height at rest (canonical units)
    lo: float  # lower lid depth at rest
    tilt: float  # outer corner height (negative: up)
    brow_y: float
    brow_th: float
    brow_arch: float
    iris_r: float
    skin: float
    brow: float
    iris: float
    flip: bool  # left vs right eye: mirror the drawing
    scale: float  # px per canonical unit
    cx: float
    cy: float


def sample_eye_identity(rng: np.random.Generator, width: int, height: int) -> EyeIdentity:
    return EyeIdentity(
        up=rng.uniform(0.36, 0.46),
        lo=rng.uniform(0.24, 0.32),
        tilt=rng.uniform(-0.1, 0.08),
        brow_y=rng.uniform(-1.1, -0.95),
        brow_th=rng.uniform(0.16, 0.24),
        brow_arch=rng.uniform(0.05, 0.15),
        iris_r=rng.uniform(0.34, 0.4),
        skin=rng.uniform(120, 210),
        brow=rng.uniform(20, 60),
        iris=rng.uniform(30, 110),
        flip=bool(rng.random() < 0.5),
        scale=rng.uniform(0.27, 0.3) * width,
        cx=width / 2 + rng.uniform(-4, 4),
        cy=height * 0.63 + rng.uniform(-3, 3),
    )


def eye_shapes(e: EyeIdentity, au: dict[str, float], offset: np.ndarray) -> dict[str, np.ndarray]:
    """Pixel-space polygons / polylines of one frame. ``offset`` (2,) px: camera / head micro-motion."""
    g = lambda k: au.get(k, 0.0)  # noqa: E731
    closed = 1.0 - g("blink")
    up = e.up * max(
        1 + 0.9 * g("AU5") - 0.55 * g("AU7") - 0.2 * g("AU6") - 0.15 * g("AU4") - 0.1 * g("AU9"), 0.1
    )
    lo = e.lo * max(
        1 - 0.6 * g("AU6") - 0.6 * g("AU7") - 0.3 * g("AU10") - 0.25 * g("AU9") + 0.2 * g("AU5"), 0.1
    )
    up, lo = up * closed, lo * closed
    x = np.linspace(-1, 1, 15)
    corner_tilt = e.tilt * (x + 1) / 2
    upper = np.stack([x, -up * (1 - x**2) ** 0.8 + corner_tilt], -1)
    lower = np.stack([x, lo * (1 - x**2) ** 0.9 + corner_tilt], -1)
    crease = upper.copy()
    crease[:, 1] -= 0.22 * (1 - x**2) ** 0.5 + 0.05 * g("AU5")

    # brow: x from inner (-1.25) to outer (1.35); inner raise AU1, outer raise AU2, lowerer AU4 / AU9
    bx = np.linspace(-1.25, 1.35, 9)
    k = (bx - bx[0]) / (bx[-1] - bx[0])  # 0 inner .. 1 outer
    r_in = 0.38 * g("AU1") - 0.32 * g("AU4") - 0.12 * g("AU9")
    r_out = 0.32 * g("AU2") - 0.15 * g("AU4")
    by = e.brow_y - e.brow_arch * np.sin(np.pi * (0.15 + 0.7 * k)) - (r_in * (1 - k) + r_out * k)
    bx = bx + 0.2 * g("AU4") * (1 - k)  # pulled towards the nose (inner side is -x)
    brow = np.stack([bx, by], -1)

    iris_c = np.array([[g("gaze_x") * 2.0, g("gaze_y") * 2.0]])
    segs, dark = [], []  # line segments (p0, p1) and their darkness
    for j in range(3):  # AU4 vertical furrows at the inner brow end
        x0 = -1.45 + 0.12 * j
        segs += [[x0, by[0] - 0.1], [x0 + 0.05, by[0] + 0.4]]
        dark.append(g("AU4"))
    for j in range(3):  # AU9 nose-wrinkle creases below the inner corner
        y0 = 0.15 + 0.17 * j
        segs += [[-1.5, y0], [-1.05, y0 + 0.12]]
        dark.append(g("AU9"))
    for dy in (-0.22, 0.0, 0.22):  # AU6 crow's feet at the outer corner
        segs += [[1.12, dy + e.tilt], [1.55, 1.7 * dy + e.tilt]]
        dark.append(g("AU6"))
    # AU6 / AU10 cheek bulge: a fold under the lower lid that rises with the cheek
    fold_y = lo + 0.35 - 0.12 * (g("AU6") + g("AU10"))
    fold = np.stack([x * 0.9, fold_y * (1 - 0.35 * x**2) + corner_tilt], -1)

    # one affine map for every point (mirror for the other eye, scale, position, micro-motion)
    parts = (upper, lower, crease, brow, iris_c, np.array(segs), fold)
    allp = np.concatenate(parts)
    if e.flip:
        allp[:, 0] = -allp[:, 0]
    allp = allp * e.scale + np.array([e.cx + offset[0], e.cy + offset[1]])
    upper, lower, crease, brow, iris_c, segs, fold = np.split(allp, np.cumsum([len(p) for p in parts])[:-1])
    return {
        "opening": np.concatenate([upper, lower[::-1]]),
        "upper": upper,
        "lower": lower,
        "crease": crease,
        "brow": brow,
        "brow_th": e.brow_th * e.scale,
        "iris_c": iris_c[0],
        "iris_r": e.iris_r * e.scale,
        "open": (up + lo) * e.scale,
        "lines": [(segs[2 * i], segs[2 * i + 1], d) for i, d in enumerate(dark)],
        "fold": fold,
        "fold_a": min(g("AU6") + g("AU10"), 1.0),
    }


def _i(p):
    return np.round(np.asarray(p) * _ONE).astype(np.int32)


def draw_eye(canvas: np.ndarray, e: EyeIdentity, sh: dict) -> None:
    """Draws one frame in place on a single-channel uint8 ``canvas`` already filled with skin shading."""
    aa, s = cv2.LINE_AA, _SHIFT
    skin = float(e.skin)
    for p0, p1, d in sh["lines"]:
        if d > 0.05:
            cv2.line(canvas, tuple(_i(p0)), tuple(_i(p1)), skin * (1 - 0.6 * min(d, 1.0)), 3, aa, s)
    if sh["fold_a"] > 0.05:
        cv2.polylines(canvas, [_i(sh["fold"])], False, skin * (1 - 0.45 * sh["fold_a"]), 3, aa, s)
    cv2.polylines(canvas, [_i(sh["crease"])], False, skin * 0.7, 2, aa, s)
    if sh["open"] > 1.0:
        opening = sh["opening"]
        x0, y0 = np.maximum(np.floor(opening.min(0)).astype(int) - 2, 0)
        x1, y1 = np.minimum(np.ceil(opening.max(0)).astype(int) + 3, [canvas.shape[1], canvas.shape[0]])
        if x1 > x0 and y1 > y0:
            roi = canvas[y0:y1, x0:x1]
            mask = np.zeros_like(roi)
            cv2.fillPoly(mask, [_i(opening - [x0, y0])], 255, aa, s)
            layer = np.full_like(roi, 225)
            c = tuple(_i(sh["iris_c"] - [x0, y0]))
            r = sh["iris_r"]
            cv2.circle(layer, c, int(r * _ONE), float(e.iris), -1, aa, s)
            cv2.circle(layer, c, int(r * 0.45 * _ONE), 8.0, -1, aa, s)
            m = mask.astype(np.float32) / 255.0
            roi[:] = (layer * m + roi * (1 - m)).astype(np.uint8)
    # lashes / lid margins: the upper one dark and thick
    cv2.polylines(canvas, [_i(sh["upper"])], False, 15.0, 3, aa, s)
    cv2.polylines(canvas, [_i(sh["lower"])], False, skin * 0.55, 1, aa, s)
    # brow: a band around the centre line
    b = sh["brow"]
    d = np.gradient(b, axis=0)
    n = np.stack([-d[:, 1], d[:, 0]], -1)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-9
    th = sh["brow_th"] / 2 * np.linspace(1.1, 0.6, len(b))[:, None]
    cv2.fillPoly(canvas, [_i(np.concatenate([b + n * th, (b - n * th)[::-1]]))], float(e.brow), aa, s)


def skin_canvas(e: EyeIdentity, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Per-subject skin background with smooth shading and faint texture, uint8 ``(height, width)``."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    shade = 1 - 0.25 * ((xx - width / 2) ** 2 + (yy - height / 2) ** 2) / (width / 2) ** 2
    tex = cv2.resize(rng.normal(0, 6, (height // 8, width // 8)).astype(np.float32), (width, height))
    return np.clip(e.skin * shade + tex, 0, 255).astype(np.uint8)
