"""Synthetic DFEW: clip rendering and the writer of the real DFEW folder layout.

Layout written under ``DIR`` (the real DFEW's, see REFERENCES.md):

  DIR/Clip/clip_224x224/<id>/<n>.jpg       frames, 256x256 BGR JPEG (as in the real folder, whose name
                                           says 224 but whose images are 256), n = 1..num_frames, not padded
  DIR/Clip/original/<id>.mp4               optional (``videos=True``): the same frames, codec mp4v, 25 fps
  DIR/EmoLabel_DataSplit/train(single-labeled)/set_<k>.csv   k = 1..5, header ``video_name,label``,
  DIR/EmoLabel_DataSplit/test(single-labeled)/set_<k>.csv    video_name = the 5-digit id, label 1-based:
                                           1 Happy, 2 Sad, 3 Neutral, 4 Angry, 5 Surprise, 6 Disgust, 7 Fear
  DIR/landmarks/<id>.npy                   float32 (num_frames, 68, 2): ground-truth iBUG-68 (x, y) in
                                           pixels of the 256x256 frame (jaw 0-16, brows 17-26, nose 27-35,
                                           eyes 36-47, mouth 48-67)
  DIR/synthesis.json                       generator settings and per-clip label / length / fold (ours)

``<id>`` is a 5-digit zero-padded number from 00001. Class proportions follow DFEW's fold-1 counts
(Disgust ~1.2%) with a floor so that every class is in every fold's test split (10 per class when there
are >= 200 clips, 5 when >= 35). The 5 folds are stratified by class; fold k is set_k's test split and the
other four its train split. Clip lengths are 8-120 frames (log-normal, median ~32: shorter than DFEW's
median 70 to keep generation fast; ~3% shorter than 16 frames, as DFEW has such clips).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np

from data_prep.synth import expressions as X
from data_prep.synth import face as F
from fer_jax.data.constants import DFEW_CLASS_COUNTS as _COUNTS
from fer_jax.data.constants import DFEW_FPS, NUM_LANDMARKS

FRAME_SIZE = 256
NUM_FOLDS = 5
# DFEW fold-1 train+test class counts in label order (fer_jax.data.constants, REFERENCES.md)
DFEW_CLASS_COUNTS = np.array(_COUNTS, dtype=np.float64)


def class_counts(num_clips: int, test_floor: int | None = None) -> np.ndarray:
    """Clips per class (label order) for ``num_clips``: DFEW's proportions with a per-class floor.

    ``test_floor``: at least this many clips of every class in each fold's test split (the floor is
    ``test_floor * NUM_FOLDS`` clips a class); default 2 from 200 clips, 1 from 35, else one clip a class.
    """
    if num_clips < len(X.EXPRESSIONS):
        raise ValueError(f"need at least {len(X.EXPRESSIONS)} clips (one per class), got {num_clips}")
    if test_floor is None:
        floor = 2 * NUM_FOLDS if num_clips >= 200 else (NUM_FOLDS if num_clips >= 35 else 1)
    else:
        floor = int(test_floor) * NUM_FOLDS
        if test_floor < 1 or floor * len(X.EXPRESSIONS) > num_clips:
            raise ValueError(
                f"test_floor {test_floor} needs {floor * len(X.EXPRESSIONS)} clips "
                f"({test_floor} a class in each of {NUM_FOLDS} folds), got {num_clips}"
            )
    counts = np.full(7, floor)
    rest = num_clips - counts.sum()
    share = DFEW_CLASS_COUNTS / DFEW_CLASS_COUNTS.sum() * num_clips - floor
    share = np.maximum(share, 0)
    share = share / share.sum() * rest
    add = np.floor(share).astype(int)
    order = np.argsort(-(share - add), kind="stable")  # largest remainders get the leftovers
    add[order[: rest - add.sum()]] += 1
    return counts + add


def plan_clips(
    num_clips: int, seed: int, median_frames: int = 32, test_floor: int | None = None
) -> list[dict]:
    """The dataset plan: per clip its id, 0-based label, length, fold and seed. Deterministic in seed.

    Lengths are log-normal around ``median_frames``, clipped to [min(16, median), 120]; ~3% are shorter.
    The same random stream for every median, so only the lengths change with it.
    """
    if median_frames < 8:
        raise ValueError(f"median_frames must be >= 8, got {median_frames}")
    low = min(16, int(median_frames))
    rng = np.random.default_rng([seed, 0])
    labels = np.repeat(np.arange(7), class_counts(num_clips, test_floor))
    rng.shuffle(labels)
    lengths = np.clip(np.round(np.exp(rng.normal(np.log(median_frames), 0.5, num_clips))), low, 120)
    lengths = lengths.astype(int)
    short = rng.random(num_clips) < 0.03
    lengths[short] = rng.integers(min(8, low - 1), low, short.sum())
    folds = np.zeros(num_clips, dtype=int)
    offset = 0
    for c in range(7):  # stratified: deal each class's clips round-robin over the folds
        idx = np.flatnonzero(labels == c)
        folds[idx] = (np.arange(idx.size) + offset) % NUM_FOLDS
        offset += idx.size
    return [
        {"id": f"{i + 1:05d}", "label": int(labels[i]), "num_frames": int(lengths[i]), "fold": int(folds[i]),
         "seed": [int(seed), 1, i]}
        for i in range(num_clips)
    ]  # fmt: skip


def _background(rng: np.random.Generator, size: int, nuisance: float = 1.0) -> np.ndarray:
    base = rng.uniform(40, 220, 3)
    low = cv2.resize(
        rng.normal(0, 35 * nuisance, (4, 4, 3)).astype(np.float32),
        (size, size),
        interpolation=cv2.INTER_CUBIC,
    )
    mid = cv2.resize(
        rng.normal(0, 12 * nuisance, (24, 24, 3)).astype(np.float32),
        (size, size),
        interpolation=cv2.INTER_LINEAR,
    )
    return np.clip(base + low + mid, 0, 255).astype(np.uint8)


def render_clip(
    label: int, num_frames: int, rng: np.random.Generator, nuisance: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Renders one clip: frames ``(T, 256, 256, 3)`` uint8 BGR and landmarks ``(T, 68, 2)`` float32.

    ``nuisance`` in [0, 1] scales the nuisance variation (pose, position, drift, background texture,
    lighting ramp, blur, noise, occlusion rate); identity and expression are unaffected, and 1.0 is the
    default dataset. The random stream is the same for every value, so it only changes amplitudes.
    """
    n = float(nuisance)
    S = FRAME_SIZE
    T = int(num_frames)
    tracks = X.sample_tracks(X.EXPRESSIONS[label], T, rng)
    idp = F.sample_identity(rng)
    bg = _background(rng, S, n)
    p0 = np.array([rng.uniform(-0.3, 0.3) * n, rng.uniform(-0.12, 0.12) * n, rng.uniform(-0.2, 0.2) * n,
                   rng.uniform(78, 95), S / 2 + rng.uniform(-10, 10) * n, S / 2 + 6 + rng.uniform(-10, 10) * n])  # fmt: skip
    drift = np.array([rng.uniform(-0.15, 0.15), rng.uniform(-0.05, 0.05), rng.uniform(-0.08, 0.08), 0.0,
                      rng.uniform(-6, 6), rng.uniform(-6, 6)]) * n  # fmt: skip
    # lighting: a linear gain ramp across the frame and a global exposure
    phi = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / (S / 2) - 1
    gain = (1 + (rng.uniform(0.75, 1.15) - 1) * n) * (
        1 + rng.uniform(0, 0.35) * n * (xx * np.cos(phi) + yy * np.sin(phi))
    )
    gain = np.repeat(gain[..., None], 3, axis=-1).astype(np.float32)
    blur = rng.uniform(0, 1.1) * n
    noise_bank = rng.normal(0, 1 + (rng.uniform(1, 6) - 1) * n, (5, S, S, 3)).astype(np.float32)
    occ = None
    if rng.random() < 0.08 * n:
        a = int(rng.integers(0, T))
        occ = (a, int(rng.integers(a, T + 1)), int(rng.choice([1, 3, 13, 15, 18, 25])), rng.uniform(22, 40),
               rng.uniform(22, 40), rng.uniform(30, 220, 3), rng.uniform(-12, 12, 2))  # fmt: skip
    frames = np.empty((T, S, S, 3), np.uint8)
    lms = np.empty((T, NUM_LANDMARKS, 2), np.float32)
    wob = rng.uniform(0, 6.3, 2)
    for i in range(T):
        au = X.frame_aus(tracks, i)
        pts, aux = F.face_geometry(idp, au)
        tr = au["tremor"]
        if tr > 0:  # fear tremor: jitter brows and mouth
            pts[17:27] += rng.normal(0, 0.012 * tr, (10, 2))
            pts[48:68] += rng.normal(0, 0.01 * tr, (20, 2))
        f = i / max(T - 1, 1)
        pv = p0 + drift * f
        pv[0] += 0.03 * np.sin(2 * np.pi * f * 1.3 + wob[0])
        pv[4:6] += 1.5 * np.sin(2 * np.pi * f * 0.9 + wob[1]) + (rng.normal(0, 0.8 * tr, 2) if tr > 0 else 0)
        pose = F.Pose(*pv)
        lm, paux = F.project_face(pts, aux, pose)
        img = bg.copy()
        F.draw_face(img, idp, lm, paux, pose)
        if occ is not None and occ[0] <= i < occ[1]:
            c = lm[occ[2]] + occ[6]
            cv2.ellipse(img, (int(c[0]), int(c[1])), (int(occ[3]), int(occ[4])), 0, 0, 360, occ[5].tolist(), -1,
                        cv2.LINE_AA)  # fmt: skip
        out = cv2.multiply(img.astype(np.float32), gain)
        if blur > 0.35:
            out = cv2.GaussianBlur(out, (0, 0), blur)
        out = cv2.add(out, noise_bank[int(rng.integers(0, len(noise_bank)))])
        frames[i] = np.clip(out, 0, 255, out=out).astype(np.uint8)
        lms[i] = lm
    return frames, lms


def write_clip(out: Path, item: dict, *, videos: bool = False, nuisance: float = 1.0) -> None:
    """Renders ``item`` (from ``plan_clips``) and writes its frames, landmarks and optional video."""
    rng = np.random.default_rng(item["seed"])
    frames, lms = render_clip(item["label"], item["num_frames"], rng, nuisance)
    quality = int(rng.integers(75, 96))
    d = out / "Clip" / "clip_224x224" / item["id"]
    d.mkdir(parents=True, exist_ok=True)
    for n, fr in enumerate(frames, start=1):
        cv2.imwrite(str(d / f"{n}.jpg"), fr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    (out / "landmarks").mkdir(exist_ok=True)
    np.save(out / "landmarks" / f"{item['id']}.npy", lms)
    if videos:
        (out / "Clip" / "original").mkdir(parents=True, exist_ok=True)
        vw = cv2.VideoWriter(str(out / "Clip" / "original" / f"{item['id']}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                             DFEW_FPS, (FRAME_SIZE, FRAME_SIZE))  # fmt: skip
        for fr in frames:
            vw.write(fr)
        vw.release()


def write_splits(out: Path, plan: list[dict]) -> None:
    """The 5-fold ``EmoLabel_DataSplit`` CSVs (header ``video_name,label``, 1-based labels)."""
    for split in ("train", "test"):
        d = out / "EmoLabel_DataSplit" / f"{split}(single-labeled)"
        d.mkdir(parents=True, exist_ok=True)
        for k in range(1, NUM_FOLDS + 1):
            rows = [it for it in plan if (it["fold"] == k - 1) == (split == "test")]
            with open(d / f"set_{k}.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["video_name", "label"])
                for it in sorted(rows, key=lambda r: r["id"]):
                    w.writerow([it["id"], it["label"] + 1])


def write_meta(out: Path, plan: list[dict], settings: dict) -> None:
    meta = {
        "kind": "dfew",
        "settings": settings,
        "class_names": list(X.EXPRESSIONS),
        "class_counts": np.bincount([it["label"] for it in plan], minlength=7).tolist(),
        "clips": [{k: it[k] for k in ("id", "label", "num_frames", "fold")} for it in plan],
    }
    (out / "synthesis.json").write_text(json.dumps(meta, indent=1))
