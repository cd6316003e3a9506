"""Per-clip preprocessing: the DFEW face path (``prepare_face_clip``) and the SEE single-eye path
(``prepare_eye_clip``), shared by the shard builders and predict so training and inference see the same
pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from fer_jax.preprocess import events as ev
from fer_jax.preprocess.face import (
    FaceDetector,
    FaceFit,
    align_matrix,
    center_fit,
    enhance,
    fit_face,
    fit_from_landmarks,
    warp,
)
from fer_jax.preprocess.frames import sample_indices
from fer_jax.preprocess.landmarks import FACE_MARGIN, TEMPLATE_68, transform_points

_DEFAULT_DETECTOR: FaceDetector | None = None


def default_detector() -> FaceDetector:
    """A process-wide Haar detector (cascades load once per process)."""
    global _DEFAULT_DETECTOR
    if _DEFAULT_DETECTOR is None:
        _DEFAULT_DETECTOR = FaceDetector()
    return _DEFAULT_DETECTOR


def _fill_fits(fits: list[FaceFit | None], height: int, width: int) -> list[FaceFit]:
    """Frames without a face borrow the nearest frame's face; a clip without any gets the centre crop.
    Missing rolls take the clip's median roll (the head rarely turns fast within a clip)."""
    found = [i for i, f in enumerate(fits) if f is not None]
    if not found:
        return [center_fit(height, width) for _ in fits]
    rolls = [f.roll for f in fits if f is not None and f.roll is not None]
    median_roll = float(np.median(rolls)) if rolls else 0.0
    out = []
    for i, f in enumerate(fits):
        if f is None:
            f = fits[min(found, key=lambda j: abs(j - i))]
        roll = f.roll if f.roll is not None else median_roll
        out.append(FaceFit(f.center, f.side, roll))
    return out


def prepare_face_clip(
    frames: Sequence[np.ndarray],
    *,
    num_frames: int = 16,
    size: int = 112,
    landmarks: np.ndarray | None = None,
    detector: FaceDetector | None = None,
    enhance: bool = True,
    sample_mode: str = "uniform",
    rng: np.random.Generator | None = None,
    event_bins: int = 0,
    fps: float = 25.0,
    align: str = "detector",
) -> dict[str, np.ndarray]:
    """One DFEW clip -> aligned, enhanced face frames.

    Args:
      frames: the clip's RGB uint8 frames ``[(H, W, 3), ...]``, at least one.
      num_frames: T frames kept (``sample_indices``; short clips repeat frames).
      size: S, the output side.
      landmarks: ``(len(frames), 68, 2)`` pixel landmarks of the source frames, or None for the template.
      detector: a ``FaceDetector`` (default: the process-wide one).
      enhance: CLAHE + bilateral + unsharp mask after the crop.
      event_bins: > 0 also simulates events between each kept frame and its predecessor (same crop) and
        returns their voxel grids (``--simulate-events`` for datasets without an event camera).
      align: ``"detector"`` (Haar face + eyes per kept frame) or ``"landmarks"`` (a similarity fit of the
        given landmarks onto the template, ``face.fit_from_landmarks``; frames whose landmarks are
        degenerate fall back to the detector). Needs ``landmarks`` for ``"landmarks"``.

    Returns dict: ``frames`` ``(T, S, S, 3)`` uint8; ``landmarks`` ``(T, 68, 2)`` float32 in [0, 1] of the
    output frame; ``face_found`` ``(T,)`` bool (False: the crop was borrowed or centred); ``indices``
    ``(T,)`` int64 into ``frames``; with ``event_bins``, ``event`` ``(T, S, S, event_bins)`` float32.
    """
    if len(frames) == 0:
        raise ValueError("empty clip")
    if landmarks is not None and len(landmarks) != len(frames):
        raise ValueError(f"{len(landmarks)} landmark frames for {len(frames)} frames")
    if align not in ("detector", "landmarks"):
        raise ValueError(f"align must be 'detector' or 'landmarks', got {align!r}")
    if align == "landmarks" and landmarks is None:
        raise ValueError("align='landmarks' needs landmarks")
    detector = detector or default_detector()
    idx = sample_indices(len(frames), num_frames, mode=sample_mode, rng=rng)
    h, w = frames[0].shape[:2]
    # fit each distinct frame once (short clips repeat indices)
    cache: dict[int, FaceFit | None] = {}
    prev = None
    for i in idx.tolist():
        if i in cache:
            continue
        fit = fit_from_landmarks(landmarks[i]) if align == "landmarks" else None
        if fit is None:
            # the previous frame's face is the tracking prior: a windowed search is several times cheaper
            fit = fit_face(frames[i], detector, near=prev)
            prev = fit or prev
        cache[i] = fit
    raw_fits = [cache[i] for i in idx.tolist()]
    found = np.array([f is not None for f in raw_fits])
    fits = _fill_fits(raw_fits, h, w)
    out_frames, out_lm, out_ev = [], [], []
    for k, i in enumerate(idx.tolist()):
        m = align_matrix(fits[k], size)
        crop = warp(frames[i], m, size)
        out_frames.append(enhance_frame(crop) if enhance else crop)
        if landmarks is not None:
            out_lm.append(np.clip(transform_points(landmarks[i], m) / size, 0.0, 1.0))
        else:
            out_lm.append(TEMPLATE_68)
        if event_bins:
            prev = warp(frames[max(i - 1, 0)], m, size)
            out_ev.append(simulate_voxels(prev, crop, event_bins, fps=fps, seed=k))
    result = {
        "frames": np.stack(out_frames).astype(np.uint8),
        "landmarks": np.stack(out_lm).astype(np.float32),
        "face_found": found,
        "indices": idx,
    }
    if event_bins:
        result["event"] = np.stack(out_ev).astype(np.float32)
    return result


def enhance_frame(rgb: np.ndarray) -> np.ndarray:
    """The enhancement step of ``prepare_face_clip`` with its default settings."""
    return enhance(rgb)


def simulate_voxels(prev: np.ndarray, cur: np.ndarray, bins: int, *, fps: float = 25.0, seed: int = 0):
    """Events a DVS would fire between two aligned RGB frames, as a ``(S, S, bins)`` float32 voxel grid."""
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (prev, cur)])
    t = np.array([0.0, 1.0 / fps])
    events = ev.simulate_events(ev.log_intensity(grey), t, seed=seed)
    grid = ev.events_to_voxel_grid(
        events, num_bins=bins, height=grey.shape[1], width=grey.shape[2], t_start=0.0, t_end=t[1] + 1e-9
    )
    return np.moveaxis(grid, 0, -1)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_LINEAR
    out = cv2.resize(img, (size, size), interpolation=interp)
    return out if out.ndim == img.ndim else out[..., None]


def prepare_eye_clip(
    rgb_frames: Sequence[np.ndarray],
    event_frames: Sequence[np.ndarray] | None,
    *,
    size: int = 100,
    num_frames: int = 16,
    sample_mode: str = "uniform",
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """One SEE/DSEE sequence -> ``num_frames`` frames of each modality resized to ``size`` (the public
    loaders resize the whole 346x260 frame, no crop; the eye already fills it).

    ``event_frames`` are SEE's JPEG event frames (or any per-frame event rendering ``(H, W, C)``) or None.
    When the two modalities have different lengths the shorter one decides (frame k pairs with event k).
    ``num_frames=0`` keeps every frame. Returns ``rgb`` ``(K, S, S, 3)`` uint8, ``event`` ``(K, S, S, C)``
    (same dtype as given; absent when None), ``indices`` ``(K,)`` into the sequence.
    """
    n = len(rgb_frames) if event_frames is None else min(len(rgb_frames), len(event_frames))
    if n == 0:
        raise ValueError("empty sequence")
    idx = np.arange(n) if num_frames == 0 else sample_indices(n, num_frames, mode=sample_mode, rng=rng)
    out = {"rgb": np.stack([_resize(rgb_frames[i], size) for i in idx]).astype(np.uint8), "indices": idx}
    if event_frames is not None:
        out["event"] = np.stack([_resize(np.asarray(event_frames[i]), size) for i in idx])
    return out


def event_voxel_clip(
    events: np.ndarray,
    frame_times: np.ndarray,
    indices: np.ndarray,
    *,
    bins: int,
    height: int,
    width: int,
    size: int,
) -> np.ndarray:
    """Voxel grids ``(K, size, size, bins)`` float32 of the events in the interval that ends at each kept
    frame's time (``(t[i-1], t[i]]``; the first frame uses the same length before it), computed at the
    sensor resolution and resized to ``size``."""
    t = np.asarray(frame_times, np.float64)
    if t.ndim != 1 or len(t) < 1 or not np.all(np.isfinite(t)):
        raise ValueError("frame times must be a finite 1-d array")
    period = float(np.median(np.diff(t))) if len(t) > 1 else 1.0 / 30.0
    if period <= 0:
        raise ValueError("frame times are not increasing")
    grids = []
    for i in np.asarray(indices).tolist():
        t_end = t[i]
        t_start = t[i - 1] if i > 0 else t_end - period
        if t_end <= t_start:
            t_start = t_end - period
        g = ev.events_to_voxel_grid(
            events, num_bins=bins, height=height, width=width, t_start=t_start, t_end=t_end
        )
        grids.append(_resize(np.moveaxis(g, 0, -1), size))
    return np.stack(grids).astype(np.float32)


__all__ = [
    "FACE_MARGIN",
    "default_detector",
    "event_voxel_clip",
    "prepare_eye_clip",
    "prepare_face_clip",
    "simulate_voxels",
]
