"""Procedural faces for the synthetic DFEW: identity, expression geometry, pose, and OpenCV drawing.

Geometry lives in a canonical face frame (x right, y down, face half-width ~1); the 68 landmarks follow
iBUG-68 indexing (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67; point 0 / the first brow /
the first eye are on the image-left side). ``face_geometry`` builds them from an identity and the frame's
action-unit intensities (``expressions.py``); ``project`` applies a weak-perspective head pose; ``draw_face``
draws from the projected points, so the ground-truth landmarks match what is drawn exactly (brows are the
brow centre lines, eye points the lid margins, mouth points the outer / inner lip contours).

Features are thick on purpose: the demo trains at 48-64 px, where a 256 px face shrinks 4-5x.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from fer_jax.data.constants import NUM_LANDMARKS


@dataclasses.dataclass
class Identity:
    """Per-clip face shape and colours (canonical units; colours BGR uint8-range floats)."""

    jaw_w: float
    jaw_h: float
    jaw_sq: float
    eye_y: float
    eye_sep: float
    eye_w: float
    eye_h: float
    brow_gap: float
    brow_th: float
    brow_arch: float
    nose_y: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_th: float
    skin: np.ndarray
    lip: np.ndarray
    brow: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    hair_line: float  # canonical y of the hairline (top of the head at -1.25)
    has_hair: bool


def sample_identity(rng: np.random.Generator) -> Identity:
    tone = rng.uniform(0.0, 1.0)  # light to dark skin
    skin = np.array([190, 205, 235]) * (1 - tone) + np.array([60, 85, 120]) * tone
    skin = skin * rng.uniform(0.92, 1.08, 3)
    hair = np.array([20, 25, 30]) + rng.uniform(0, 1) * np.array([40, 70, 110])
    return Identity(
        jaw_w=rng.uniform(0.88, 1.05),
        jaw_h=rng.uniform(1.15, 1.4),
        jaw_sq=rng.uniform(0.7, 1.0),
        eye_y=rng.uniform(-0.36, -0.26),
        eye_sep=rng.uniform(0.17, 0.25),
        eye_w=rng.uniform(0.4, 0.5),
        eye_h=rng.uniform(0.085, 0.11),
        brow_gap=rng.uniform(0.2, 0.26),
        brow_th=rng.uniform(0.06, 0.09),
        brow_arch=rng.uniform(0.02, 0.06),
        nose_y=rng.uniform(0.2, 0.3),
        nose_w=rng.uniform(0.15, 0.21),
        mouth_y=rng.uniform(0.6, 0.7),
        mouth_w=rng.uniform(0.34, 0.42),
        lip_th=rng.uniform(0.07, 0.1),
        skin=np.clip(skin, 0, 255),
        lip=np.clip(skin * np.array([0.55, 0.5, 0.85]), 0, 255),
        brow=np.clip(hair * rng.uniform(0.7, 1.0), 0, 255),
        hair=hair,
        iris=np.array([30, 40, 50]) + rng.uniform(0, 1) * np.array([90, 70, 30]),
        hair_line=rng.uniform(-1.0, -0.8),
        has_hair=bool(rng.random() < 0.85),
    )


@dataclasses.dataclass
class Pose:
    """Head pose for one frame: yaw/pitch/roll in radians, scale in px per canonical unit, centre in px."""

    yaw: float
    pitch: float
    roll: float
    scale: float
    cx: float
    cy: float


def _lerp(a, b, n):
    return np.linspace(a, b, n)


def face_geometry(idp: Identity, au: dict[str, float]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Canonical landmarks ``(68, 2)`` and auxiliary drawing points for one frame's AU intensities."""
    g = lambda k: au.get(k, 0.0)  # noqa: E731
    pts = np.zeros((NUM_LANDMARKS, 2))
    aux: dict[str, np.ndarray] = {}

    # jaw: half ellipse from ear level, chin drops with the jaw (AU26)
    a = np.pi * np.arange(17) / 16
    jaw_top = idp.eye_y + 0.08
    drop = 0.3 * g("AU26")
    sa = np.sin(a)
    pts[0:17, 0] = -np.sign(np.cos(a)) * np.abs(np.cos(a)) ** idp.jaw_sq * idp.jaw_w
    pts[0:17, 1] = jaw_top + sa * (idp.jaw_h + drop * sa)
    # forehead arc closing the face outline (aux, not a landmark)
    b = np.pi + np.pi * np.arange(1, 16) / 16
    aux["forehead"] = np.stack([-np.cos(b) * idp.jaw_w * 0.98, jaw_top + np.sin(b) * (jaw_top + 1.25)], -1)
    fh = aux["forehead"]
    aux["hair"] = fh[fh[:, 1] < idp.hair_line]

    # brows: centre lines, 5 points outer -> inner on the image-left brow; inner/outer raise, lowerer
    r_in = 0.18 * g("AU1") - 0.13 * g("AU4") - 0.05 * g("AU9")
    r_out = 0.14 * g("AU2") - 0.06 * g("AU4")
    pull = 0.08 * g("AU4")
    k = np.arange(5) / 4
    bx = _lerp(-(idp.eye_sep + idp.eye_w + 0.05), -(idp.eye_sep - 0.03), 5) + pull * k
    by = (
        idp.eye_y
        - idp.brow_gap
        - idp.brow_arch * np.sin(np.pi * (k * 0.8 + 0.1))
        - (r_out * (1 - k) + r_in * k)
    )
    pts[17:22] = np.stack([bx, by], -1)
    pts[22:27] = np.stack([-bx[::-1], by[::-1]], -1)

    # nose: bridge 27-30, base 31-35 (AU9 wrinkles it up and flares it, AU10 lifts it a little)
    lift = 0.05 * g("AU9") + 0.02 * g("AU10")
    pts[27:31] = np.stack([np.zeros(4), _lerp(idp.eye_y + 0.02, idp.nose_y - lift, 4)], -1)
    nw = idp.nose_w * (1 + 0.25 * g("AU9"))
    pts[31:36] = np.stack(
        [_lerp(-nw, nw, 5), idp.nose_y + 0.07 - lift + np.array([-0.02, 0.01, 0.02, 0.01, -0.02])], -1
    )

    # eyes: 36 outer, 37-38 upper lid, 39 inner, 40-41 lower lid (image-left); mirrored for 42-47
    closed = 1.0 - g("blink")
    up = (
        idp.eye_h * max(1 + 1.0 * g("AU5") - 0.5 * g("AU7") - 0.25 * g("AU6") - 0.15 * g("AU4"), 0.1) * closed
    )
    lo = idp.eye_h * 0.8 * max(1 - 0.6 * g("AU6") - 0.5 * g("AU7") + 0.2 * g("AU5") - 0.2 * g("AU9"), 0.1)
    lo *= closed
    cx = -(idp.eye_sep + idp.eye_w / 2)
    hw = idp.eye_w / 2
    ey = idp.eye_y
    left = np.array(
        [
            [cx - hw, ey],
            [cx - hw / 3, ey - up],
            [cx + hw / 3, ey - up],
            [cx + hw, ey],
            [cx + hw / 3, ey + lo],
            [cx - hw / 3, ey + lo],
        ]
    )
    pts[36:42] = left
    right = left[[3, 2, 1, 0, 5, 4]].copy()
    right[:, 0] *= -1
    pts[42:48] = right
    gx, gy = g("gaze_x") * idp.eye_w, g("gaze_y") * idp.eye_w
    aux["iris"] = np.array([[cx + gx, ey + gy], [-cx + gx, ey + gy]])
    aux["iris_r"] = np.array([idp.eye_h * 1.15])
    aux["eye_open"] = np.array([up + lo])

    # mouth: corners pulled up/out (AU12), down (AU15), stretched (AU20), pressed (AU24), opened (AU26)
    mw = idp.mouth_w * (1 + 0.22 * g("AU12") + 0.35 * g("AU20") - 0.2 * g("AU26") - 0.2 * g("AU24"))
    my = idp.mouth_y
    cy = my - 0.2 * g("AU12") + 0.16 * g("AU15") + 0.02 * g("AU20")
    in_up = my - 0.06 * g("AU10") - 0.02 * g("AU12")
    in_lo = my + 0.32 * g("AU26") + 0.03 * g("AU20") + 0.08 * g("AU12") + 0.02 * g("AU10")
    thin = 1 - 0.4 * g("AU20") - 0.45 * g("AU24")
    top = in_up - idp.lip_th * thin
    bot = in_lo + idp.lip_th * 1.2 * thin

    def arc(xf, y_mid):  # lips bend towards the corners' height quadratically
        return y_mid + (cy - y_mid) * xf**2

    f_up = np.array([-1, -0.6, -0.25, 0, 0.25, 0.6, 1.0])
    y_up = arc(np.abs(f_up), top) - np.array([0, 0, 0.015, 0, 0.015, 0, 0])  # cupid's bow
    pts[48:55] = np.stack([f_up * mw, y_up], -1)
    f_lo = np.array([0.6, 0.25, 0, -0.25, -0.6])
    pts[55:60] = np.stack([f_lo * mw, arc(np.abs(f_lo), bot)], -1)
    f_iu = np.array([-0.85, -0.3, 0, 0.3])
    pts[60:64] = np.stack([f_iu * mw, arc(np.abs(f_iu), in_up)], -1)
    f_il = np.array([0.85, 0.3, 0, -0.3])
    pts[64:68] = np.stack([f_il * mw, arc(np.abs(f_il), in_lo)], -1)
    pts[64, 1] = arc(0.85, in_up)  # inner corners meet: 60 and 64 lie on the upper inner arc
    aux["mouth_open"] = np.array([in_lo - in_up])

    # expression wrinkles (aux line segments, darkness in the last column)
    wr = []
    for j in range(3):  # AU9: horizontal creases across the nose bridge
        y = idp.eye_y + 0.08 + 0.06 * j
        wr.append([-0.08, y, 0.08, y + 0.01, g("AU9")])
    for s in (-1, 1):  # AU4: vertical furrows between the brows
        wr.append([s * 0.05, by[-1] - 0.02, s * 0.06, by[-1] + 0.14, g("AU4")])
        # AU6: crow's feet at the outer eye corners
        ox = s * (idp.eye_sep + idp.eye_w + 0.04)
        for dy in (-0.05, 0.0, 0.05):
            wr.append([ox, ey + dy, ox + s * 0.1, ey + 1.8 * dy, g("AU6")])
        # AU12: nasolabial folds from the nose wings towards the mouth corners
        wr.append([s * (nw + 0.05), idp.nose_y, s * (mw + 0.08), cy + 0.05, g("AU12")])
    aux["wrinkles"] = np.array(wr)
    return pts, aux


def _depth(p: np.ndarray) -> np.ndarray:
    """Rough face depth for weak perspective: a rounded face with the nose standing out."""
    return 0.35 * np.sqrt(np.clip(1 - (p[..., 0] / 1.05) ** 2, 0, 1))


def project(p: np.ndarray, pose: Pose, nose_depth: np.ndarray | None = None) -> np.ndarray:
    """Canonical points ``(..., 2)`` -> pixel points ``(..., 2)`` under ``pose``."""
    z = _depth(p) if nose_depth is None else _depth(p) + nose_depth
    x = p[..., 0] * np.cos(pose.yaw) + z * np.sin(pose.yaw)
    y = p[..., 1] * np.cos(pose.pitch) - z * np.sin(pose.pitch)
    c, s = np.cos(pose.roll), np.sin(pose.roll)
    xr, yr = c * x - s * y, s * x + c * y
    return np.stack([pose.cx + pose.scale * xr, pose.cy + pose.scale * yr], -1)


NOSE_DEPTH = np.zeros(NUM_LANDMARKS)
NOSE_DEPTH[27:31] = np.linspace(0.05, 0.3, 4)
NOSE_DEPTH[31:36] = np.array([0.1, 0.15, 0.2, 0.15, 0.1])


def project_face(pts: np.ndarray, aux: dict[str, np.ndarray], pose: Pose) -> tuple[np.ndarray, dict]:
    """Projects landmarks and the auxiliary points; radii and openings are scaled."""
    lm = project(pts, pose, NOSE_DEPTH)
    out = {
        "forehead": project(aux["forehead"], pose),
        "hair": project(aux["hair"], pose),
        "iris": project(aux["iris"], pose, np.full(2, 0.05)),
        "iris_r": aux["iris_r"] * pose.scale,
        "eye_open": aux["eye_open"] * pose.scale,
        "mouth_open": aux["mouth_open"] * pose.scale,
    }
    w = aux["wrinkles"]
    out["wrinkles"] = np.concatenate([project(w[:, 0:2], pose), project(w[:, 2:4], pose), w[:, 4:5]], axis=1)
    return lm, out


_SHIFT = 4  # fixed-point bits for cv2 drawing: sub-pixel accurate anti-aliased shapes
_ONE = 1 << _SHIFT


def _ip(p: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(p) * _ONE).astype(np.int32)


def _poly(img, p, color):
    cv2.fillPoly(img, [_ip(p)], tuple(float(c) for c in color), cv2.LINE_AA, _SHIFT)


def _line(img, p, color, th, closed=False):
    cv2.polylines(
        img, [_ip(p)], closed, tuple(float(c) for c in color), max(int(round(th)), 1), cv2.LINE_AA, _SHIFT
    )


def draw_face(img: np.ndarray, idp: Identity, lm: np.ndarray, aux: dict, pose: Pose) -> None:
    """Draws the face in place on a BGR uint8 ``img`` from projected landmarks ``(68, 2)``."""
    s = pose.scale
    outline = np.concatenate([lm[0:17], aux["forehead"]])
    _poly(img, outline, idp.skin)
    if idp.has_hair:  # hair cap above the hairline (the outline's upper part, cut at the hairline)
        if len(aux["hair"]) >= 3:
            _poly(img, aux["hair"], idp.hair)
    skin_dark = idp.skin * 0.75
    # wrinkles first: features drawn later stay crisp on top
    for x0, y0, x1, y1, a in aux["wrinkles"]:
        if a > 0.05:
            _line(img, np.array([[x0, y0], [x1, y1]]), idp.skin * (1 - 0.45 * min(a, 1.0)), 0.02 * s + 1)
    # eyes: sclera, iris (hidden by the lids when they close), lid margins
    for e, ic in ((lm[36:42], aux["iris"][0]), (lm[42:48], aux["iris"][1])):
        if aux["eye_open"][0] > 1.0:
            _poly(img, e, (235, 238, 240))
            r = min(aux["iris_r"][0], aux["eye_open"][0] * 0.55)
            # the iris is clipped to the lid opening: draw it on a copy of the eye's box, blend by the mask
            x0, y0 = np.maximum(np.floor(e.min(0)).astype(int) - 2, 0)
            x1, y1 = np.minimum(np.ceil(e.max(0)).astype(int) + 3, [img.shape[1], img.shape[0]])
            if x1 <= x0 or y1 <= y0:
                continue
            roi = img[y0:y1, x0:x1]
            mask = np.zeros(roi.shape[:2], np.uint8)
            _poly(mask, e - [x0, y0], (255,))
            layer = roi.copy()
            c = tuple(_ip(ic - [x0, y0]))
            cv2.circle(layer, c, int(r * _ONE), tuple(float(v) for v in idp.iris), -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(layer, c, int(r * 0.45 * _ONE), (10, 10, 10), -1, cv2.LINE_AA, _SHIFT)
            m = mask[..., None].astype(np.float32) / 255.0
            roi[:] = (layer * m + roi * (1 - m)).astype(np.uint8)
        _line(img, e[[0, 1, 2, 3]], (25, 25, 30), 0.035 * s + 1)
        _line(img, e[[3, 4, 5, 0]], skin_dark, 0.02 * s + 1)
    # brows: thick bands around the centre lines
    for br in (lm[17:22], lm[22:27]):
        d = np.gradient(br, axis=0)
        n = np.stack([-d[:, 1], d[:, 0]], -1)
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-9
        th = idp.brow_th * s / 2 * np.array([0.6, 1.0, 1.0, 1.0, 0.9])[:, None]
        _poly(img, np.concatenate([br + n * th, (br - n * th)[::-1]]), idp.brow)
    # nose: bridge shadow, base, nostrils
    _line(img, lm[27:31], idp.skin * 0.82, 0.025 * s + 1)
    _line(img, lm[31:36], skin_dark * 0.8, 0.03 * s + 1)
    for j in (32, 34):
        cv2.ellipse(
            img, tuple(_ip(lm[j])), (int(0.04 * s * _ONE), int(0.022 * s * _ONE)), 0, 0, 360,
            tuple(float(c) for c in skin_dark * 0.5), -1, cv2.LINE_AA, _SHIFT,
        )  # fmt: skip
    # mouth: lips, dark opening, upper teeth when open
    _poly(img, lm[48:60], idp.lip)
    if aux["mouth_open"][0] > 1.5:
        inner = np.concatenate([lm[60:64], lm[64:68]])
        _poly(img, inner, (35, 25, 45))
        teeth_h = min(aux["mouth_open"][0] * 0.35, 0.06 * s)
        up = lm[60:65]
        _poly(img, np.concatenate([up, (up + [0, teeth_h])[::-1]]), (225, 230, 235))
    _line(img, np.concatenate([lm[60:64], lm[64:65]]), idp.lip * 0.6, 0.02 * s + 1)
