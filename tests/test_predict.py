"""predict: a generated video and a frame folder give probabilities; a corrupt file gives a one-line error
while the other inputs still run. Uses a tiny frames+landmarks model trained 2 steps on the dfew fixture."""

import json
from pathlib import Path

import cv2
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fer_jax.models import registry

ROOT = Path(__file__).resolve().parents[1]


class _TinyVideoNet(nnx.Module):
    """frames (B, T, S, S, 3), landmarks (B, T, 68, 2) -> logits (B, 7) from pooled colour + landmarks."""

    def __init__(self, config, *, rngs):
        self.fc = nnx.Linear(3 + 2, config.model.num_classes, rngs=rngs)

    def __call__(self, frames, landmarks):
        feats = jnp.concatenate([frames.mean(axis=(1, 2, 3)), landmarks.mean(axis=(1, 2))], axis=-1)
        return {"logits": self.fc(feats)}


def _spec(config):
    t, s = config.data.num_frames, config.data.image_size
    return {"frames": ((t, s, s, 3), np.float32), "landmarks": ((t, 68, 2), np.float32)}


registry.register("tiny_video_test", lambda config, *, rngs: _TinyVideoNet(config, rngs=rngs), _spec)


@pytest.fixture(scope="module")
def run_dir(dfew_shards, tmp_path_factory):
    from configs.common import base_config
    from fer_jax.training.loop import train

    c = base_config()
    c.model.name = "tiny_video_test"
    c.data.dir = str(dfew_shards)
    c.data.num_frames, c.data.image_size = 8, 64
    c.train.batch_size, c.train.num_steps, c.train.eval_every_steps = 2, 2, 2
    c.eval.batch_size = 4
    workdir = tmp_path_factory.mktemp("predict_run")
    assert train(c, workdir, progress=False)["status"] == "finished"
    return workdir


def _video(path: Path, dfew_raw: Path) -> Path:
    folder = sorted((dfew_raw / "Clip" / "clip_224x224").iterdir())[0]
    frames = [cv2.imread(str(f)) for f in sorted(folder.iterdir())]
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def test_predict_video_folder_and_corrupt_file(run_dir, dfew_raw, tmp_path, capsys):
    from fer_jax import predict

    video = _video(tmp_path / "clip.mp4", dfew_raw)
    folder = sorted((dfew_raw / "Clip" / "clip_224x224").iterdir())[1]
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00not a video" * 100)
    # in-process main(): the tiny model is registered in this process only
    rc = predict.main(["--workdir", str(run_dir), "--json", str(video), str(corrupt), str(folder)])
    r = capsys.readouterr()
    assert rc == 1, r.err  # one input failed
    errors = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "corrupt.mp4" in errors[0], r.err
    rows = [json.loads(ln) for ln in r.out.splitlines() if ln.startswith("{")]
    assert [row["input"] for row in rows] == [str(video), str(folder)]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for row in rows:
        probs = row["probabilities"]
        assert list(probs) == manifest["class_names"]
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert row["prediction"] == max(probs, key=probs.get)


def test_predictor_library_use_and_missing_input(run_dir):
    """The library path: Predictor restores the chosen checkpoint; a missing input raises."""
    from fer_jax.predict import Predictor

    p = Predictor(run_dir, "latest")
    spec = registry.input_spec(p.config)
    assert p.step == 2
    assert set(spec) == {"frames", "landmarks"}
    with pytest.raises(FileNotFoundError):
        p.predict(run_dir / "missing.mp4")
