"""Predict expressions: ``python -m fer_jax.predict --workdir DIR INPUT... [--json] [--checkpoint best]``.

INPUT is a video file or a folder of frames. Each input goes through the preprocessing the shard builder
applied (``fer_jax.preprocess``: frame sampling, face detection + alignment + enhancement for DFEW-style
runs; resizing for single-eye SEE-style runs) with the settings recorded in the run's manifest, then the
pipeline's own record -> model-input transform (normalisation, temporal sampling), so the model sees
what it saw in evaluation. SEE-style runs take a sequence folder of the SEE layout
(``SEE/frame/<emotion>/<seq>``, paired with ``SEE/event/<emotion>/<seq>``), a folder holding ``frame/``
and ``event/`` sub-folders, or plain RGB input, whose event frames are then simulated from the RGB.

A bad or unreadable input prints a one-line error for that input; the others still run; the exit status
is 1 when any input failed. Library use: ``Predictor(workdir).predict(path) -> {class: probability}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np

from fer_jax.models import registry
from fer_jax.training import evaluation, steps
from fer_jax.training import state as state_lib

SEE_FPS = 30.0  # SEE's frames are 33 ms apart


class Predictor:
    """A trained run ready for inference (EMA weights when the run kept them)."""

    def __init__(self, workdir: str | Path, checkpoint: str = "best"):
        from fer_jax.evaluate import restore_for_eval

        workdir = Path(workdir)
        self.config, defs, state, self.step, self.mesh = restore_for_eval(workdir, checkpoint)
        self.manifest = _load_manifest(workdir, self.config)
        self.class_names = list(self.manifest.get("class_names") or range(self.config.model.num_classes))
        self.input_names = list(registry.input_spec(self.config))
        self._params, self._rest = state_lib.eval_params(state), state["rest"]
        self._eval = steps.jit_eval_step(steps.make_eval_step(defs, self.input_names), self.mesh)

    def prepare(self, path: str | Path) -> dict[str, np.ndarray]:
        """One input -> one example of model inputs (no batch axis)."""
        from fer_jax.data import pipeline

        record = _record(Path(path), self.config, self.manifest, self.input_names)
        example = pipeline.prepare_example(record, self.config, self.manifest)
        return {k: np.asarray(example[k]) for k in self.input_names}

    def predict(self, path: str | Path) -> dict[str, float]:
        """Per-class probabilities for one input (raises ValueError / OSError on a bad input)."""
        example = self.prepare(path)
        n = jax.device_count()  # one row per device: the batch axis is sharded over the mesh
        batch = {k: np.repeat(v[None], n, axis=0) for k, v in example.items()}
        batch["mask"] = np.ones((n,), bool)
        out = self._eval(
            self._params, self._rest, evaluation.device_batch(batch, self.input_names, self.mesh)
        )
        probs = np.asarray(out["probs"])[0]
        return {str(name): float(p) for name, p in zip(self.class_names, probs)}


def _load_manifest(workdir: Path, config) -> dict:
    path = workdir / "manifest.json"
    if path.exists():
        return json.loads(path.read_text())
    from fer_jax.data.manifest import load_manifest

    return dict(load_manifest(config.data.dir))


def _frames(path: Path, what: str = "input") -> list[np.ndarray]:
    from fer_jax.preprocess.video import read_frames

    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    frames = read_frames(path)
    if not frames:
        raise ValueError(f"no frames could be read from {path}")
    return [np.asarray(f) for f in frames]


def _encode(frames: np.ndarray, encoding: str) -> np.ndarray:
    from fer_jax.data.schema import encode_frames

    enc = encode_frames(frames, encoding)
    if isinstance(enc, np.ndarray):
        return enc
    arr = np.empty(len(enc), dtype=object)
    arr[:] = enc
    return arr


def _record(path: Path, config, manifest: dict, input_names: list[str]) -> dict:
    """Builds the record the shard builder would have stored for this input."""
    prep = manifest.get("preprocessing", {})
    size = int(prep.get("size", config.data.image_size))
    num_frames = int(prep.get("frames", config.data.num_frames))
    encoding = prep.get("encoding", "jpeg")
    if config.data.dataset == "dfew":
        from fer_jax.preprocess.clip import prepare_face_clip

        bins = int(prep.get("bins", 3)) if "event" in input_names else 0
        clip = prepare_face_clip(
            _frames(path),
            num_frames=num_frames,
            size=size,
            enhance=bool(prep.get("enhance", True)),
            event_bins=bins,
        )
        record = {"frames": _encode(clip["frames"], encoding), "landmarks": clip["landmarks"], "label": 0}
        if "event" in clip:
            record["event"] = clip["event"].astype(np.float16)
        return record
    # SEE / DSEE: RGB + event frames of one eye
    from fer_jax.preprocess.clip import prepare_eye_clip

    sibling = _see_event_sibling(path)
    if path.is_dir() and (path / "frame").is_dir() and (path / "event").is_dir():
        rgb, event = _frames(path / "frame", "frame folder"), _frames(path / "event", "event folder")
    elif sibling is not None:  # SEE layout: SEE/frame/<emotion>/<seq> pairs with SEE/event/<emotion>/<seq>
        rgb, event = _frames(path, "frame folder"), _frames(sibling, "event folder")
    else:
        rgb = _frames(path)
        event = _simulated_event_frames(rgb)
    clip = prepare_eye_clip(rgb, event, size=size, num_frames=num_frames)
    voxel = prep.get("events_used") == "voxel"
    ev = clip["event"]
    if voxel:
        raise ValueError(
            "this run was trained on event voxel grids: give raw events through the shard builder"
        )
    return {"rgb": _encode(clip["rgb"], encoding), "event": _encode(ev, encoding), "label": 0, "lighting": 0}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer_jax.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="training run directory")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="video files or frame folders")
    parser.add_argument("--checkpoint", default="best", help="best (default), latest or a step number")
    parser.add_argument("--json", action="store_true", help="one JSON object per input instead of tables")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor(args.workdir, args.checkpoint)
    except Exception as e:
        print(f"error: {type(e).__name__}: {_first_line(e)}", file=sys.stderr)
        return 1
    failed = 0
    for item in args.inputs:
        try:
            probs = predictor.predict(item)
        except Exception as e:  # one line per bad input; keep going with the others
            failed += 1
            print(f"error: {item}: {type(e).__name__}: {_first_line(e)}", file=sys.stderr)
            continue
        best = max(probs, key=probs.get)
        if args.json:
            print(json.dumps({"input": item, "prediction": best, "probabilities": probs}))
        else:
            print(f"{item}: {best} ({100 * probs[best]:.1f}%)")
            for name, p in sorted(probs.items(), key=lambda kv: -kv[1]):
                print(f"  {name:<12}{100 * p:6.2f}%")
    return 1 if failed else 0


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else ""


if __name__ == "__main__":
    sys.exit(main())
