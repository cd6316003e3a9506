"""Clip augmentation in numpy / OpenCV, run inside the grain map: one set of random parameters per clip,
applied to every frame, so the temporal signal is not drowned in per-frame jitter (paper 1: flips, affine
jitter, brightness / contrast, CLAHE / noise / blur, colour jitter). Event tensors get the geometric part
only (photometric changes have no meaning for polarity counts); landmarks follow the geometry.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from fer_jax.preprocess.landmarks import flip_landmarks, transform_points


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random parameters (all "mild", as the paper says)."""

    flip: bool = True
    max_rotate: float = 10.0  # degrees
    scale: tuple[float, float] = (0.9, 1.1)
    max_translate: float = 0.05  # fraction of the side
    brightness: float = 0.15  # added, fraction of 255
    contrast: float = 0.15  # multiplicative around the frame mean: 1 +- contrast
    saturation: float = 0.15
    channel_gain: float = 0.05  # colour jitter: per-channel gain 1 +- gain
    extra_prob: float = 0.3  # probability of one of CLAHE / noise / blur
    photometric: bool = True


@dataclasses.dataclass(frozen=True)
class ClipParams:
    flip: bool
    matrix: np.ndarray  # 2x3, pixels -> pixels, applied after the flip
    brightness: float
    contrast: float
    saturation: float
    gains: np.ndarray  # (3,)
    extra: str  # none | clahe | noise | blur
    extra_strength: float
    noise_seed: int


def sample_params(rng: np.random.Generator, size: int, cfg: AugmentConfig = AugmentConfig()) -> ClipParams:
    """Draws one clip's augmentation parameters."""
    angle = rng.uniform(-cfg.max_rotate, cfg.max_rotate)
    scale = rng.uniform(*cfg.scale)
    tx, ty = rng.uniform(-cfg.max_translate, cfg.max_translate, size=2) * size
    m = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle, scale)
    m[:, 2] += (tx, ty)
    extra = "none"
    if cfg.photometric and rng.random() < cfg.extra_prob:
        extra = ("clahe", "noise", "blur")[int(rng.integers(0, 3))]
    return ClipParams(
        flip=bool(cfg.flip and rng.random() < 0.5),
        matrix=m,
        brightness=float(rng.uniform(-cfg.brightness, cfg.brightness) * 255) if cfg.photometric else 0.0,
        contrast=float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)) if cfg.photometric else 1.0,
        saturation=float(rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)) if cfg.photometric else 1.0,
        gains=rng.uniform(1 - cfg.channel_gain, 1 + cfg.channel_gain, 3) if cfg.photometric else np.ones(3),
        extra=extra,
        extra_strength=float(rng.uniform(0.3, 1.0)),
        noise_seed=int(rng.integers(0, 2**31)),
    )


def _warp_stack(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Warps every frame of ``(T, S, S, C)``; cv2 handles at most 4 channels at a time."""
    t, h, w, c = x.shape
    out = np.empty_like(x)
    for i in range(t):
        for c0 in range(0, c, 4):
            part = np.ascontiguousarray(x[i, :, :, c0 : c0 + 4])
            r = cv2.warpAffine(part, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
            out[i, :, :, c0 : c0 + 4] = r.reshape(h, w, -1)
    return out


def geometric(x: np.ndarray, p: ClipParams) -> np.ndarray:
    """Flip + affine jitter of a ``(T, S, S, C)`` stack (frames or event tensors), same dtype out."""
    if p.flip:
        x = x[:, :, ::-1]
    return _warp_stack(np.ascontiguousarray(x), p.matrix)


def geometric_landmarks(lm: np.ndarray, p: ClipParams, size: int) -> np.ndarray:
    """The same geometry on ``(T, 68, 2)`` landmarks in [0, 1] (clipped back into the frame)."""
    if p.flip:
        lm = flip_landmarks(lm)
    # landmark coordinate u in [0, 1] sits at pixel u * size - 0.5 in the pixel-centre convention of cv2
    pix = transform_points(np.asarray(lm) * size - 0.5, p.matrix)
    return np.clip((pix + 0.5) / size, 0.0, 1.0).astype(np.float32)


def photometric(frames: np.ndarray, p: ClipParams) -> np.ndarray:
    """Brightness / contrast / saturation / channel gains and one optional CLAHE, noise or blur, on
    ``(T, S, S, 3)`` uint8 RGB; returns uint8."""
    x = frames.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * p.contrast + mean + p.brightness
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = grey[..., None] + p.saturation * (x - grey[..., None])
    x = np.clip(x * p.gains.astype(np.float32), 0, 255)
    if p.extra == "noise":
        noise = np.random.default_rng(p.noise_seed).normal(0.0, 8.0 * p.extra_strength, x.shape)
        x = np.clip(x + noise.astype(np.float32), 0, 255)
    out = x.astype(np.uint8)
    if p.extra == "blur":
        sigma = 0.3 + p.extra_strength
        out = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in out])
    elif p.extra == "clahe":
        clahe = cv2.createCLAHE(clipLimit=1.0 + p.extra_strength * 2.0, tileGridSize=(8, 8))
        lab = [cv2.cvtColor(f, cv2.COLOR_RGB2LAB) for f in out]
        for f in lab:
            f[..., 0] = clahe.apply(f[..., 0])
        out = np.stack([cv2.cvtColor(f, cv2.COLOR_LAB2RGB) for f in lab])
    return out
