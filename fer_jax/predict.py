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

Memory does not grow with the input's length: only the frames the record keeps are held; where the
build used every frame (per-frame landmarks, simulated events) they stream past one at a time
(``video.StreamedClip``, ``events.EventSimulator``) and give the same record as the whole clip.

A bad or unreadable input prints a one-line error for that input; the others still run; the exit status
is 1 when any input failed (2 on bad usage, 130 after Ctrl-C). ``--checkpoint latest`` skips an unreadable
newest step with a ``note:`` naming it, as a resume does. Library use:
``Predictor(workdir).predict(path, landmarks=None) -> {class: probability}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np

from fer_jax import cpu_threads
from fer_jax.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Parser, checkpoint_arg, interrupted, one_line
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
        """One input -> one example of model inputs (no batch axis; uint8 frames with
        ``train.normalize_on_device``: the eval step normalises them)."""
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


def _face_landmarks(frames, settings, landmarks: Path | None) -> np.ndarray | None:
    """The landmarks the builder would have used for this input (see the module docstring). ``frames``:
    the clip (a ``StreamedClip``: ``lbf:`` iterates it once; ``file:`` needs only its length)."""
    from fer_jax.preprocess.clip import face_landmarks
    from fer_jax.preprocess.landmarks import load_landmark_file

    if not settings.landmarks.startswith("file:"):
        # a landmark model (lbf:) runs on every frame as the builder's did, streamed; template / none
        # builds never used per-frame landmarks
        return face_landmarks(frames, settings)[0] if settings.per_frame_landmarks else None
    if landmarks is not None:
        return load_landmark_file(landmarks, num_frames=len(frames))
    if settings.align == "landmarks":
        raise ValueError(
            "this run was trained on landmark-aligned crops from per-clip landmark files: give the "
            "input's landmarks with --landmarks PATH (an (n, 68, 2) .npy)"
        )
    return None  # detector-aligned: the builder, too, used the template for a clip without a file


def _record(path: Path, run: Run, *, landmarks: Path | None = None) -> dict:
    """Builds the record the shard builder would have stored for this input.

    Memory is bounded whatever the input's length: only the frames the record needs are held (the kept
    ones, their predecessors for simulated events, frame 0); per-frame landmarks and simulated events are
    computed while the frames stream past (``video.StreamedClip``, ``events.EventSimulator``).
    """
    from fer_jax.preprocess.clip import (
        EyeRecordSettings,
        FaceRecordSettings,
        make_eye_record,
        make_face_record,
    )

    prep = dict(run.info.preprocessing)
    if run.config.data.dataset == "dfew":
        settings = FaceRecordSettings.from_manifest(prep)
        if not (settings.simulate_events or settings.per_frame_landmarks):
            # the builder, too, decoded only the kept frames (same pixels: the same sample_indices)
            frames = _frames(path, num_frames=int(settings.frames) or None)
            return _as_stored(make_face_record(frames, settings))
        clip = _face_clip(path, settings)
        lms = _face_landmarks(clip, settings, landmarks)  # lbf: one streaming pass over every frame
        return _as_stored(make_face_record(clip.load(), settings, landmarks=lms))
    # SEE / DSEE: RGB + event frames of one eye
    settings = EyeRecordSettings.from_manifest(prep)
    if settings.events != "frames":
        raise ValueError(
            "this run was trained on event voxel grids: give raw events through the shard builder"
        )
    sibling = _see_event_sibling(path)
    if path.is_dir() and (path / "frame").is_dir() and (path / "event").is_dir():
        rgb, event = _eye_pair(path / "frame", path / "event", settings)
    elif sibling is not None:  # SEE layout: SEE/frame/<emotion>/<seq> pairs with SEE/event/<emotion>/<seq>
        rgb, event = _eye_pair(path, sibling, settings)
    else:
        rgb, event = _simulated_eye_clip(path, settings)
    return _as_stored(make_eye_record(rgb, event, settings))


def _face_clip(path: Path, settings):
    """The input as a ``StreamedClip`` holding what ``make_face_record`` indexes: the kept frames, frame 0
    (its size) and, with simulated events, each kept frame's predecessor."""
    from fer_jax.preprocess.frames import sample_indices
    from fer_jax.preprocess.video import StreamedClip, frame_count

    _exists(path)
    n = frame_count(path)
    idx = sample_indices(n, int(settings.frames)).tolist()
    keep = {0, *idx}
    if settings.simulate_events:
        keep |= {max(i - 1, 0) for i in idx}
    return StreamedClip(path, keep, length=n)


def _exists(path: Path, what: str = "input") -> None:
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")


def _eye_indices(n: int, settings) -> list[int]:
    """The positions ``prepare_eye_clip`` keeps of a sequence of ``n`` (``frames`` 0: all)."""
    from fer_jax.preprocess.frames import sample_indices

    return list(range(n)) if int(settings.frames) == 0 else sample_indices(n, int(settings.frames)).tolist()


def _eye_pair(rgb_dir: Path, event_dir: Path, settings):
    """A SEE sequence's RGB and event frame folders, decoding only the frames the record keeps (frame k
    pairs with event k; the shorter folder decides the length, as in ``prepare_eye_clip``)."""
    from fer_jax.preprocess.video import StreamedClip, frame_count

    _exists(rgb_dir, "frame folder")
    _exists(event_dir, "event folder")
    n_rgb, n_event = frame_count(rgb_dir), frame_count(event_dir)
    keep = _eye_indices(min(n_rgb, n_event), settings)
    return (StreamedClip(rgb_dir, keep, length=n_rgb).load(),
            StreamedClip(event_dir, keep, length=n_event).load())  # fmt: skip


class _HeldFrames(dict):
    """``{index: frame}`` that a record builder indexes like a list of ``length`` frames."""

    def __init__(self, length: int):
        super().__init__()
        self.length = length

    def __len__(self) -> int:
        return self.length


def _simulated_eye_clip(path: Path, settings):
    """Plain RGB input of a SEE-style run: the kept RGB frames and SEE-style event frames simulated from
    every RGB frame, streamed (``events.EventSimulator``: one frame of state, not the whole clip).

    The event frame of frame i holds the events in ``[t[i-1], t[i] + 1e-9)`` (frame 0: ``[t0, t0 + 1e-9)``),
    t = frame index / SEE_FPS. Those events lie in the intervals ending at frames i-1, i and i+1, so frame
    i is drawn once frame i+1 is simulated, from the last three intervals' events only.
    """
    import cv2

    from fer_jax.preprocess import events as ev
    from fer_jax.preprocess.video import StreamedClip, frame_count

    _exists(path)
    n = frame_count(path)
    keep = set(_eye_indices(n, settings))
    rgb = StreamedClip(path, keep, length=n)
    event = _HeldFrames(n)
    chunks: dict[int, np.ndarray] = {0: ev.empty_events()}  # events of the interval ending at frame k
    sim, h, w = None, 0, 0

    def draw(i: int) -> np.ndarray:
        near = np.concatenate([chunks[k] for k in (i - 1, i, i + 1) if k in chunks])
        return ev.events_to_frame(near, height=h, width=w, t_start=max(i - 1, 0) / SEE_FPS,
                                  t_end=i / SEE_FPS + 1e-9)  # fmt: skip

    for i, frame in enumerate(rgb):
        log = ev.log_intensity(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        if sim is None:
            sim, (h, w) = ev.EventSimulator(log, 0.0), log.shape
            continue
        chunks[i] = sim.step(log, i / SEE_FPS)
        if i - 1 in keep:
            event[i - 1] = draw(i - 1)
        chunks.pop(i - 2, None)
    if n < 2:
        event[0] = np.full((h, w, 3), 128, np.uint8)  # no second frame: no events
    elif n - 1 in keep:
        event[n - 1] = draw(n - 1)
    return rgb.load(), event


def _see_event_sibling(path: Path) -> Path | None:
    parts = path.parts
    if not path.is_dir() or "frame" not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index("frame")
    sibling = Path(*parts[:i], "event", *parts[i + 1 :])
    return sibling if sibling.is_dir() else None


def _simulated_event_frames(rgb: list[np.ndarray]) -> list[np.ndarray]:
    """SEE-style event frames simulated from all RGB frames at once (the reference the streamed
    ``_simulated_eye_clip`` is tested against)."""
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
    parser = Parser(prog="python -m fer_jax.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="training run directory")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="video files or frame folders")
    parser.add_argument(
        "--checkpoint", default="best", type=checkpoint_arg, help="best (default), latest or a step number"
    )
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
    try:  # before anything creates the JAX backend
        cpu_threads.apply_from_env()
    except ValueError as e:
        parser.exit(EXIT_USAGE, f"error: {e}\n")
    try:
        predictor = Predictor(args.workdir, args.checkpoint)
    except KeyboardInterrupt:
        return interrupted("while loading the run")
    except Exception as e:
        print(f"error: {one_line(e, with_type=True)}", file=sys.stderr)
        return EXIT_FAILURE
    for note in predictor.run.notes:  # an unreadable newest checkpoint was skipped: say which step is used
        print(f"note: {note}", file=sys.stderr)
    failed = 0
    for item in args.inputs:
        try:
            lm = _landmark_file(args.landmarks, item, len(args.inputs))
            details = predictor.predict_details(item, landmarks=lm)
        except KeyboardInterrupt:  # the inputs answered so far are printed; no traceback
            return interrupted(f"at {item}")
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
