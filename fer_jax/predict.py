"""Predict expressions: ``python -m fer_jax.predict --workdir DIR INPUT... [--json] [--checkpoint best]
[--landmarks PATH]``.

INPUT is a video file or a folder of frames. Each input becomes the record the shard builder would have
stored (``fer_jax.preprocess.clip.make_face_record`` / ``make_eye_record``, the builder's own functions,
with the settings recorded in the run's manifest: frame count, size, encoding, landmarks, alignment,
enhancement, events), then goes through the pipeline's record -> model-input transform (normalisation,
temporal sampling), so the model sees what it saw in evaluation. SEE-style runs take a sequence folder of
the SEE layout (``SEE/frame/<emotion>/<seq>``, paired with ``SEE/event/<emotion>/<seq>``), a folder
holding ``frame/`` and ``event/`` sub-folders, or plain RGB input, whose event frames are then simulated
from the RGB.

Landmarks: a run whose shards were landmark-aligned from per-clip files (``--landmarks file:DIR`` at
build time) needs each input's landmark file: ``--landmarks PATH`` names the ``.npy`` (one input) or a
folder holding ``<input name>.npy`` (the builder's format, ``fer_jax.preprocess.landmarks``); without it
such a run refuses with a one-line error. ``lbf:`` builds run the same LBF landmarker as the builder.

A bad or unreadable input prints a one-line error for that input; the others still run; the exit status
is 1 when any input failed (2 on bad usage). Library use:
``Predictor(workdir).predict(path, landmarks=None) -> {class: probability}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np

from fer_jax.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, one_line
from fer_jax.data.constants import SEE_FPS
from fer_jax.training.run import Run


class Predictor:
    """A trained run ready for inference (EMA weights when the run kept them).

    Attributes: ``run`` (the restored ``Run``), ``config``, ``step``, ``class_names``, ``input_names``,
    ``manifest`` (the run's copy of its shards' manifest).
    """

    def __init__(self, workdir: str | Path, checkpoint: str = "best"):
        self.run = Run.restore(workdir, checkpoint)
        self.config, self.step = self.run.config, self.run.step
        self.manifest = self.run.info.manifest()
        self.class_names = self.run.class_names
        self.input_names = self.run.input_names

    def record(self, path: str | Path, *, landmarks: str | Path | None = None) -> dict:
        """The record the shard builder would store for this input (label 0)."""
        return _record(Path(path), self.run, landmarks=None if landmarks is None else Path(landmarks))

    def prepare(self, path: str | Path, *, landmarks: str | Path | None = None) -> dict[str, np.ndarray]:
        """One input -> one example of model inputs (no batch axis)."""
        return self._prepare(path, landmarks)[0]

    def _prepare(self, path: str | Path, landmarks: str | Path | None) -> tuple[dict[str, np.ndarray], dict]:
        from fer_jax.data import pipeline

        record = self.record(path, landmarks=landmarks)
        example = pipeline.prepare_example(record, self.config, self.manifest)
        return {k: np.asarray(example[k]) for k in self.input_names}, record

    def predict(self, path: str | Path, *, landmarks: str | Path | None = None) -> dict[str, float]:
        """Per-class probabilities for one input (raises ValueError / OSError on a bad input).

        ``landmarks``: the input's landmark file (``(n, 68, 2)`` pixel ``.npy``, one row per source
        frame); needed by runs whose shards were aligned with per-clip landmark files.
        """
        return self.predict_details(path, landmarks=landmarks)["probabilities"]

    def predict_details(self, path: str | Path, *, landmarks: str | Path | None = None) -> dict:
        """``{"probabilities": {class: p}, "face_found": fraction of the kept frames whose face was
        detected (None for single-eye runs, which detect no face)}``. At 0 the model saw centre crops."""
        example, record = self._prepare(path, landmarks)
        n = jax.device_count()  # one row per device: the batch axis is sharded over the mesh
        batch = {k: np.repeat(v[None], n, axis=0) for k, v in example.items()}
        batch["mask"] = np.ones((n,), bool)
        probs = self.run.predict_batch(batch)["probs"][0]
        found = record.get("face_found")
        return {
            "probabilities": {str(name): float(p) for name, p in zip(self.class_names, probs)},
            "face_found": None if found is None else float(np.mean(np.asarray(found, bool))),
        }


def _frames(path: Path, what: str = "input", num_frames: int | None = None) -> list[np.ndarray]:
    """The input's RGB frames; ``num_frames`` decodes only those ``sample_indices`` keeps (a long video
    is streamed, never held in memory whole)."""
    from fer_jax.preprocess.video import read_frames

    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    frames = read_frames(path, num_frames=num_frames)
    if not frames:
        raise ValueError(f"no frames could be read from {path}")
    return [np.asarray(f) for f in frames]


def _as_stored(record: dict) -> dict:
    """Encoded frame lists as the object arrays a shard read returns (what the pipeline indexes)."""
    out = {}
    for k, v in record.items():
        if isinstance(v, list):
            arr = np.empty(len(v), dtype=object)
            arr[:] = v
            v = arr
        out[k] = v
    return out


def _face_landmarks(frames: list[np.ndarray], settings, landmarks: Path | None) -> np.ndarray | None:
    """The landmarks the builder would have used for this input (see the module docstring)."""
    from fer_jax.preprocess.clip import face_landmarks
    from fer_jax.preprocess.landmarks import load_landmark_file

    if settings.landmarks.startswith("lbf:"):
        return face_landmarks(frames, settings)[0]
    if not settings.landmarks.startswith("file:"):
        return None  # template / none builds: per-frame landmarks were never used
    if landmarks is not None:
        return load_landmark_file(landmarks, num_frames=len(frames))
    if settings.align == "landmarks":
        raise ValueError(
            "this run was trained on landmark-aligned crops from per-clip landmark files: give the "
            "input's landmarks with --landmarks PATH (an (n, 68, 2) .npy)"
        )
    return None  # detector-aligned: the builder, too, used the template for a clip without a file


def _record(path: Path, run: Run, *, landmarks: Path | None = None) -> dict:
    """Builds the record the shard builder would have stored for this input."""
    from fer_jax.preprocess.clip import (
        EyeRecordSettings,
        FaceRecordSettings,
        make_eye_record,
        make_face_record,
    )

    prep = dict(run.info.preprocessing)
    if run.config.data.dataset == "dfew":
        settings = FaceRecordSettings.from_manifest(prep)
        # as the builder: every frame only where events or per-frame landmarks need them (same pixels:
        # the kept frames are the same sample_indices either way)
        need_all = settings.simulate_events or settings.per_frame_landmarks
        frames = _frames(path, num_frames=None if need_all else int(settings.frames) or None)
        lms = _face_landmarks(frames, settings, landmarks)
        return _as_stored(make_face_record(frames, settings, landmarks=lms))
    # SEE / DSEE: RGB + event frames of one eye
    settings = EyeRecordSettings.from_manifest(prep)
    if settings.events != "frames":
        raise ValueError(
            "this run was trained on event voxel grids: give raw events through the shard builder"
        )
    sibling = _see_event_sibling(path)
    if path.is_dir() and (path / "frame").is_dir() and (path / "event").is_dir():
        rgb, event = _frames(path / "frame", "frame folder"), _frames(path / "event", "event folder")
    elif sibling is not None:  # SEE layout: SEE/frame/<emotion>/<seq> pairs with SEE/event/<emotion>/<seq>
        rgb, event = _frames(path, "frame folder"), _frames(sibling, "event folder")
    else:
        rgb = _frames(path)
        event = _simulated_event_frames(rgb)
    return _as_stored(make_eye_record(rgb, event, settings))


def _see_event_sibling(path: Path) -> Path | None:
    parts = path.parts
    if not path.is_dir() or "frame" not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index("frame")
    sibling = Path(*parts[:i], "event", *parts[i + 1 :])
    return sibling if sibling.is_dir() else None


def _simulated_event_frames(rgb: list[np.ndarray]) -> list[np.ndarray]:
    """SEE-style event frames simulated from RGB frames (for inputs without an event camera)."""
    import cv2

    from fer_jax.preprocess import events as ev

    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb])
    t = np.arange(len(rgb)) / SEE_FPS
    if len(rgb) < 2:
        return [np.full((*grey.shape[1:], 3), 128, np.uint8)]
    stream = ev.simulate_events(ev.log_intensity(grey), t)
    h, w = grey.shape[1:]
    out = [
        ev.events_to_frame(stream, height=h, width=w, t_start=t[max(i - 1, 0)], t_end=t[i] + 1e-9)
        for i in range(len(rgb))
    ]
    return out


def _landmark_file(option: str | None, item: str, count: int) -> Path | None:
    """``--landmarks``: a ``.npy`` (one input) or a folder of ``<input name>.npy`` files."""
    if option is None:
        return None
    p = Path(option)
    if p.is_dir():
        stem = Path(item).stem if Path(item).is_file() else Path(item).name
        return p / f"{stem}.npy"
    if count > 1:
        raise ValueError("--landmarks FILE takes one INPUT; give a folder of <name>.npy for several")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer_jax.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="training run directory")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="video files or frame folders")
    parser.add_argument("--checkpoint", default="best", help="best (default), latest or a step number")
    parser.add_argument(
        "--landmarks",
        default=None,
        metavar="PATH",
        help="landmark file (n, 68, 2) .npy of the input, or a folder of <input name>.npy files; needed by "
        "runs built with --landmarks file:DIR and landmark alignment",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per input instead of tables")
    args = parser.parse_args(argv)
    if args.landmarks is not None and not Path(args.landmarks).is_dir() and len(args.inputs) > 1:
        parser.exit(EXIT_USAGE, "error: --landmarks FILE takes one INPUT; give a folder for several\n")
    try:
        predictor = Predictor(args.workdir, args.checkpoint)
    except Exception as e:
        print(f"error: {one_line(e, with_type=True)}", file=sys.stderr)
        return EXIT_FAILURE
    failed = 0
    for item in args.inputs:
        try:
            lm = _landmark_file(args.landmarks, item, len(args.inputs))
            details = predictor.predict_details(item, landmarks=lm)
        except Exception as e:  # one line per bad input; keep going with the others
            failed += 1
            print(f"error: {item}: {one_line(e, with_type=True)}", file=sys.stderr)
            continue
        probs, found = details["probabilities"], details["face_found"]
        best = max(probs, key=probs.get)
        if found == 0.0:
            print(f"warning: {item}: no face found in any frame; this is the prediction of centre crops",
                  file=sys.stderr)  # fmt: skip
        if args.json:
            print(
                json.dumps({"input": item, "prediction": best, "probabilities": probs, "face_found": found})
            )
        else:
            face = "" if found is None else f", face found in {100 * found:.0f}% of frames"
            print(f"{item}: {best} ({100 * probs[best]:.1f}%{face})")
            for name, p in sorted(probs.items(), key=lambda kv: -kv[1]):
                print(f"  {name:<12}{100 * p:6.2f}%")
    return EXIT_FAILURE if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
