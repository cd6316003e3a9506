"""Synthetic SEE (single-eye RGB + event): sequence rendering, event simulation and the SEE layout writer.

Layout written under ``DIR`` (the real SEE's, see REFERENCES.md, plus raw events the real release lacks):

  DIR/frame/<emotion>/<seq_name>/00000.jpg   intensity frames, 5-digit zero-padded from 0, 128x96 (W x H)
                                             JPEG with 3 equal channels (DAVIS346 frames are monochrome;
                                             346x260 is costly, 128x96 keeps its 4:3 aspect)
  DIR/event/<emotion>/<seq_name>/00000.jpg   event frame k: the events of the frame interval that ends at
                                             frame k, ``[t_k - 1/30 s, t_k)``, rendered by
                                             ``fer_jax.preprocess.events.events_to_frame`` (grey 128
                                             background, R = ON, B = OFF, G = signed; RGB order on disk
                                             as a normal colour JPEG)
  DIR/raw_events/<seq_name>.npy              all events of the sequence, ``EVENT_DTYPE`` (t float64 seconds,
                                             x, y uint16, p int8 +1/-1), t in [0, t_last)
  DIR/raw_events/<seq_name>_frame_times.npy  float64 (num_frames,) timestamps t_k = (k + 1) / 30 s
  DIR/emotion.json                           {"labels": [...], "database": {seq_name: {"subset":
                                             "training"|"testing", "annotations": {"label": <emotion>,
                                             "segment": [0, num_frames]}}}}
  DIR/synthesis.json                         generator settings and per-sequence metadata (ours)

Emotion folders / labels: angry, disgust, fear, happiness, neutral, sadness, surprise (that order in
``labels``). Sequence names ``[seq#]_[ID]_[sex]_[age]_[degree]_[lighting]_[emotion]_[length]_[take#]``, e.g.
``7_003_woman_27_Master_Low_fear_31_take000``, lighting tokens ``normal``, ``Overexposed``, ``Low``,
``HDR``. Classes are balanced, lighting conditions cycle within each class, and the test split (~1/3, as
SEE's 767 / 2,405) is drawn per (emotion, lighting) cell so each condition is equally represented.

The clean scene is rendered at ``SUBSTEPS`` x 30 fps; events are simulated from its log intensity (so
they do not see the lighting degradation, as a real event camera's ~120 dB range does not), and
only the 30 fps intensity frames are degraded: ``normal`` mild gain and noise; ``Overexposed`` gain
2.5-4 clipped at white; ``Low`` gain ``LOW_GAIN`` (0.003-0.008) plus sensor noise: nearly black, the eye's
contrast (at most 1-2 grey levels) under the read noise (6.4 levels), so the frames alone hardly show the
expression while the events still do; ``HDR`` a smooth split of the frame into an over- and an
under-exposed part. Continuous head / camera micro-motion keeps edges visible in the events also when the
expression is at rest.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from data_prep.synth import expressions as X
from data_prep.synth.eye import draw_eye, eye_shapes, sample_eye_identity, skin_canvas
from fer_jax.data.constants import SEE_CLASS_NAMES, SEE_FPS
from fer_jax.preprocess import events as E

WIDTH, HEIGHT = 128, 96
FPS = SEE_FPS
SUBSTEPS = 3  # clean renders per frame interval for the event simulation
EMOTIONS = SEE_CLASS_NAMES  # the emotion folder names
TO_EXPRESSION = {
    "angry": "Angry", "disgust": "Disgust", "fear": "Fear", "happiness": "Happy", "neutral": "Neutral",
    "sadness": "Sad", "surprise": "Surprise",
}  # fmt: skip
LIGHTINGS = ("normal", "Overexposed", "Low", "HDR")
TEST_FRACTION = 0.32
EVENT_SETTINGS = {"contrast_threshold": 0.3, "threshold_sigma": 0.03, "refractory": 1e-3}  # DAVIS-like
# Low light's exposure: the frames are meant to be unreadable, as a DAVIS346's ~55 dB frames are in the dark
# scenes its events still resolve; the earlier 0.015-0.035 left the expression readable (an RGB-only demo
# training reached 69 % on it, issue #19)
LOW_GAIN = (0.003, 0.008)
NOISE_RATE = {"normal": 0.1, "Overexposed": 0.1, "Low": 0.5, "HDR": 0.2}  # events / pixel / s


def plan_sequences(num_seqs: int, seed: int) -> list[dict]:
    """Per sequence: name, emotion, lighting, length, subset, subject, seed. Deterministic in ``seed``."""
    if num_seqs < len(EMOTIONS):
        raise ValueError(f"need at least {len(EMOTIONS)} sequences (one per class), got {num_seqs}")
    rng = np.random.default_rng([seed, 0])
    emotions = np.arange(num_seqs) % len(EMOTIONS)
    lighting = np.zeros(num_seqs, dtype=int)
    for c in range(len(EMOTIONS)):
        idx = np.flatnonzero(emotions == c)
        lighting[idx] = (np.arange(idx.size) + c) % len(LIGHTINGS)
    order = rng.permutation(num_seqs)
    emotions, lighting = emotions[order], lighting[order]
    subset = np.array(["training"] * num_seqs, dtype=object)
    for c in range(len(EMOTIONS)):
        for li in range(len(LIGHTINGS)):
            idx = np.flatnonzero((emotions == c) & (lighting == li))
            n_test = int(np.round(idx.size * TEST_FRACTION))
            subset[rng.permutation(idx)[:n_test]] = "testing"
    lengths = np.clip(np.round(np.exp(rng.normal(np.log(28), 0.35, num_seqs))), 18, 80).astype(int)
    num_subjects = max(1, num_seqs // 20)
    subjects = [
        {"id": f"{s + 1:03d}", "sex": str(rng.choice(["man", "woman"])), "age": int(rng.integers(18, 41)),
         "degree": str(rng.choice(["Bachelor", "Master", "PhD"]))}
        for s in range(num_subjects)
    ]  # fmt: skip
    subject_of = rng.integers(0, num_subjects, num_seqs)
    plan = []
    for i in range(num_seqs):
        sub = subjects[subject_of[i]]
        emo, light, n = EMOTIONS[emotions[i]], LIGHTINGS[lighting[i]], int(lengths[i])
        name = f"{i + 1}_{sub['id']}_{sub['sex']}_{sub['age']}_{sub['degree']}_{light}_{emo}_{n}_take000"
        plan.append(
            {"name": name, "emotion": emo, "label": int(emotions[i]), "lighting": light, "num_frames": n,
             "subset": str(subset[i]), "subject": int(subject_of[i]), "seed": [int(seed), 2, i],
             "subject_seed": [int(seed), 3, int(subject_of[i])]}
        )  # fmt: skip
    return plan


def _degrade(clean: np.ndarray, lighting: str, rng: np.random.Generator, split: tuple) -> np.ndarray:
    """Clean linear intensity ``(T, H, W)`` in [0, 1] -> uint8 frames as the sensor records them."""
    T, H, W = clean.shape
    if lighting == "normal":
        out = clean * rng.uniform(0.8, 1.0) + rng.normal(0, 0.01, clean.shape)
    elif lighting == "Overexposed":
        out = clean * rng.uniform(2.5, 4.0) + 0.15 + rng.normal(0, 0.01, clean.shape)
    elif lighting == "Low":
        g = rng.uniform(*LOW_GAIN)
        # shot noise grows with the signal; read noise sets the floor
        out = clean * g + rng.normal(0, 1, clean.shape) * np.sqrt(0.025**2 + 0.002 * clean * g)
    elif lighting == "HDR":
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        ang, pos = split
        d = (xx - W / 2) * np.cos(ang) + (yy - H / 2) * np.sin(ang) - pos
        bright = 1 / (1 + np.exp(-d / 4.0))
        gain = 0.04 + (3.5 - 0.04) * bright
        out = clean * gain[None] + rng.normal(0, 0.015, clean.shape)
    else:
        raise ValueError(f"unknown lighting {lighting!r}")
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def render_sequence(item: dict) -> dict:
    """Renders one sequence: RGB frames, event frames, raw events and frame times.

    Returns ``{"frames": (T, H, W) uint8, "event_frames": (T, H, W, 3) uint8 RGB, "events": EVENT_DTYPE,
    "frame_times": (T,) float64, "clean": (T, H, W) float32}``.
    """
    T = item["num_frames"]
    eye = sample_eye_identity(np.random.default_rng(item["subject_seed"]), WIDTH, HEIGHT)
    rng = np.random.default_rng(item["seed"])
    base = skin_canvas(eye, WIDTH, HEIGHT, np.random.default_rng(item["subject_seed"]))
    tracks = X.sample_tracks(TO_EXPRESSION[item["emotion"]], T + 1, rng)
    n_sub = T * SUBSTEPS + 1  # clean renders at t = j / (FPS * SUBSTEPS), j = 0 .. T * SUBSTEPS
    frac = np.arange(n_sub) / SUBSTEPS
    hi = X.interpolate_tracks(tracks, frac)
    t_sub = frac / FPS
    # micro-motion: a slow random walk of the whole eye plus a small circular oscillation (head-mounted
    # camera and fixational eye movements) whose direction turns ~70 degrees per frame, so edges of every
    # orientation fire in every frame interval and the event frames outline the current eye state
    steps = rng.normal(0, 0.15, (T + 3, 2))
    walk = np.cumsum(steps, 0)
    walk -= walk.mean(0)
    rad, freq, ph = rng.uniform(0.4, 0.6), rng.uniform(5, 7), rng.uniform(0, 6.3)
    mx = np.interp(frac, np.arange(T + 3), walk[:, 0]) + rad * np.cos(2 * np.pi * freq * t_sub + ph)
    my = np.interp(frac, np.arange(T + 3), walk[:, 1]) + rad * np.sin(2 * np.pi * freq * t_sub + ph)
    trem_f, trem_ph = rng.uniform(7, 10), rng.uniform(0, 6.3)
    trem = 1.5 * hi["tremor"] * np.sin(2 * np.pi * trem_f * t_sub + trem_ph)
    clean = np.empty((n_sub, HEIGHT, WIDTH), np.float32)
    for j in range(n_sub):
        au = {k: float(v[j]) for k, v in hi.items()}
        canvas = base.copy()
        draw_eye(canvas, eye, eye_shapes(eye, au, np.array([mx[j] + trem[j], my[j] + 0.5 * trem[j]])))
        clean[j] = canvas
    clean = (clean + 4.0) / 259.0  # no pixel fully black: the log stays finite and meaningful
    events = E.simulate_events(
        E.log_intensity(clean), t_sub, noise_rate=NOISE_RATE[item["lighting"]],
        seed=int(np.random.default_rng(item["seed"] + [9]).integers(2**31)), **EVENT_SETTINGS,
    )  # fmt: skip
    frame_idx = np.arange(1, T + 1) * SUBSTEPS
    frame_times = t_sub[frame_idx]
    frames = _degrade(
        clean[frame_idx], item["lighting"], rng, (rng.uniform(0, 2 * np.pi), rng.uniform(-15, 15))
    )
    ev_frames = np.stack(
        [
            E.events_to_frame(events, height=HEIGHT, width=WIDTH, t_start=t - 1 / FPS, t_end=t)
            for t in frame_times
        ]
    )
    return {
        "frames": frames,
        "event_frames": ev_frames,
        "events": events,
        "frame_times": frame_times,
        "clean": clean[frame_idx],
    }


def write_sequence(out: Path, item: dict, *, raw_events: bool = True) -> int:
    """Renders and writes one sequence (raw event streams unless ``raw_events=False``); returns its number
    of events."""
    r = render_sequence(item)
    fdir = out / "frame" / item["emotion"] / item["name"]
    edir = out / "event" / item["emotion"] / item["name"]
    fdir.mkdir(parents=True, exist_ok=True)
    edir.mkdir(parents=True, exist_ok=True)
    q = [cv2.IMWRITE_JPEG_QUALITY, 92]
    # event frames: no chroma subsampling, or isolated ON / OFF pixels would bleed into their neighbours
    q_ev = [
        cv2.IMWRITE_JPEG_QUALITY,
        95,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    ]
    for k, (fr, ev) in enumerate(zip(r["frames"], r["event_frames"])):
        cv2.imwrite(str(fdir / f"{k:05d}.jpg"), cv2.cvtColor(fr, cv2.COLOR_GRAY2BGR), q)
        cv2.imwrite(str(edir / f"{k:05d}.jpg"), cv2.cvtColor(ev, cv2.COLOR_RGB2BGR), q_ev)
    if not raw_events:
        return int(r["events"].size)
    (out / "raw_events").mkdir(exist_ok=True)
    np.save(out / "raw_events" / f"{item['name']}.npy", r["events"])
    np.save(out / "raw_events" / f"{item['name']}_frame_times.npy", r["frame_times"])
    return int(r["events"].size)


def write_index(out: Path, plan: list[dict], settings: dict, num_events: list[int] | None = None) -> None:
    """``emotion.json`` in SEE's format and our ``synthesis.json``."""
    db = {
        it["name"]: {
            "subset": it["subset"],
            "annotations": {"label": it["emotion"], "segment": [0, it["num_frames"]]},
        }
        for it in plan
    }
    (out / "emotion.json").write_text(json.dumps({"labels": list(EMOTIONS), "database": db}, indent=1))
    meta = {
        "kind": "see",
        "settings": {**settings, "width": WIDTH, "height": HEIGHT, "fps": FPS, "substeps": SUBSTEPS,
                     "events": EVENT_SETTINGS, "noise_rate": NOISE_RATE, "event_frame": "events_to_frame"},
        "sequences": [
            {k: it[k] for k in ("name", "emotion", "lighting", "num_frames", "subset", "subject")}
            | ({"num_events": num_events[i]} if num_events else {})
            for i, it in enumerate(plan)
        ],
    }  # fmt: skip
    (out / "synthesis.json").write_text(json.dumps(meta, indent=1))
