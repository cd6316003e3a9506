"""Expression dynamics for the synthetic datasets: per-frame action-unit (AU) intensity tracks.

Each of the 7 expressions is a set of FACS action units (those the papers name) whose intensities in [0, 1]
evolve over the clip (onset, apex, offset). Faces (``face.py``) and eyes (``eye.py``) turn the tracks into
geometry, so both datasets share one definition of what an expression is.

  Happy     AU6 + AU12 (sometimes AU26: open smile)
  Sad       AU1 + AU15 (+ a little AU4: oblique brows)
  Neutral   none (random talking mouth movements, blinks and gaze shifts as in every class)
  Angry     AU4 + AU7 (+ AU24 lip press)
  Surprise  AU1 + AU2 + AU5 + AU26
  Disgust   AU9 + AU10 (+ a little AU4, AU15)
  Fear      AU1 + AU2 + AU4 + AU5 + AU20 (+ a little AU26)

Dynamics carry class evidence, so temporal models matter: Surprise has an almost instantaneous onset and
holds its apex; Fear builds up slowly (a linear ramp over most of the clip) with a tremor, and its
brow-lowering (AU4) and lip-stretch (AU20) arrive only in the second half; the other classes have a
smooth onset, an apex and a partial offset. Extra tracks: ``blink`` (eye closure 0..1), ``tremor``
(amplitude of per-frame jitter), ``gaze_x``/``gaze_y`` (iris offset in eye-width units).
"""

from __future__ import annotations

import numpy as np

from fer_jax.data.constants import DFEW_CLASS_NAMES

# DFEW label order (0-based; DFEW's CSVs are 1-based)
EXPRESSIONS = DFEW_CLASS_NAMES
AUS = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU12", "AU15", "AU20", "AU24", "AU26")

# expression -> {AU: weight at apex}
_AU_SETS: dict[str, dict[str, float]] = {
    "Happy": {"AU6": 1.0, "AU12": 1.0},
    "Sad": {"AU1": 1.0, "AU15": 1.0, "AU4": 0.3},
    "Neutral": {},
    "Angry": {"AU4": 1.0, "AU7": 1.0, "AU24": 0.7},
    "Surprise": {"AU1": 1.0, "AU2": 1.0, "AU5": 1.0, "AU26": 1.0},
    "Disgust": {"AU9": 1.0, "AU10": 1.0, "AU4": 0.25, "AU15": 0.3},
    "Fear": {"AU1": 1.0, "AU2": 0.6, "AU4": 0.8, "AU5": 1.0, "AU20": 1.0, "AU26": 0.25},
}
_FEAR_LATE = ("AU4", "AU20")  # Fear's AUs that arrive in the second half


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _generic_curve(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    start, dur = rng.uniform(0.0, 0.3), rng.uniform(0.15, 0.35)
    off_start, off_dur = rng.uniform(0.7, 1.1), rng.uniform(0.15, 0.3)
    # the offset only goes down to ~65%: late frames keep evidence, as most DFEW clips end near the apex
    return _smoothstep((t - start) / dur) * (1.0 - 0.35 * _smoothstep((t - off_start) / off_dur))


def sample_tracks(expression: str, num_frames: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-frame tracks ``{name: (num_frames,) float32}`` for one clip of ``expression``.

    Keys: every name in ``AUS`` plus ``blink``, ``tremor``, ``gaze_x``, ``gaze_y``.
    """
    if expression not in _AU_SETS:
        raise ValueError(f"unknown expression {expression!r}; known: {', '.join(EXPRESSIONS)}")
    T = int(num_frames)
    t = np.arange(T) / max(T - 1, 1)
    tracks = {au: np.zeros(T) for au in AUS}
    apex = rng.uniform(0.7, 1.0)
    au_set = dict(_AU_SETS[expression])
    if expression == "Happy" and rng.random() < 0.5:
        au_set["AU26"] = 0.3
    if expression == "Surprise":
        start = rng.uniform(0.05, 0.35)
        base = _smoothstep((t - start) / rng.uniform(0.02, 0.06))
        late = base
    elif expression == "Fear":
        start, end = rng.uniform(0.0, 0.15), rng.uniform(0.75, 1.0)
        base = np.clip((t - start) / (end - start), 0, 1)
        late_start = start + rng.uniform(0.3, 0.45)
        late = np.clip((t - late_start) / max(end - late_start, 0.1), 0, 1)
    else:
        base = _generic_curve(t, rng)
        late = base
    for au, w in au_set.items():
        curve = late if (expression == "Fear" and au in _FEAR_LATE) else base
        tracks[au] = apex * w * rng.uniform(0.85, 1.1) * curve
    tracks["tremor"] = base if expression == "Fear" else np.zeros(T)

    # nuisance movements shared by all classes: talking (small mouth opening), blinks, gaze shifts
    if rng.random() < 0.3:
        f = rng.uniform(0.15, 0.35)  # cycles per frame
        talk = 0.12 * (0.5 + 0.5 * np.sin(2 * np.pi * f * np.arange(T) + rng.uniform(0, 6.3)))
        tracks["AU26"] = np.maximum(tracks["AU26"], talk)
    blink = np.zeros(T)
    for _ in range(rng.poisson(T / 100.0)):  # ~0.3 blinks per second at 30 fps
        c = rng.uniform(0, T)
        blink = np.maximum(blink, np.clip(1.0 - np.abs(np.arange(T) - c) / 1.5, 0, 1))
    tracks["blink"] = blink
    gx, gy = np.zeros(T), np.zeros(T)
    for _ in range(rng.poisson(1.0)):
        c = rng.uniform(0, T)
        gx = np.where(np.arange(T) >= c, rng.uniform(-0.15, 0.15), gx)
        gy = np.where(np.arange(T) >= c, rng.uniform(-0.05, 0.05), gy)
    tracks["gaze_x"], tracks["gaze_y"] = gx, gy
    return {k: np.asarray(v, dtype=np.float32) for k, v in tracks.items()}


def frame_aus(tracks: dict[str, np.ndarray], i: int) -> dict[str, float]:
    """The tracks' values at frame ``i`` as a plain dict (what the drawing code consumes)."""
    return {k: float(v[i]) for k, v in tracks.items()}


def interpolate_tracks(tracks: dict[str, np.ndarray], times: np.ndarray) -> dict[str, np.ndarray]:
    """Tracks resampled at fractional frame indices ``times`` (linear), for high-frame-rate rendering."""
    idx = np.arange(len(next(iter(tracks.values()))))
    return {k: np.interp(times, idx, v).astype(np.float32) for k, v in tracks.items()}
