"""predict: a generated video and a frame folder give probabilities; a corrupt file gives a one-line error
while the other inputs still run. Uses a tiny frames+landmarks model trained 2 steps on the dfew fixture."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tiny_model  # noqa: E402  registers the tiny model (tests/tiny_model.py)

from fer_jax.models import registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(dfew_shards, tmp_path_factory):
    from configs.common import base_config
    from fer_jax.training.loop import train

    c = base_config()
    c.model.name = tiny_model.NAME
    c.data.dir = str(dfew_shards)
    c.data.num_frames, c.data.image_size = 8, 64
    c.train.batch_size, c.train.num_steps, c.train.eval_every_steps = 2, 2, 2
    c.eval.batch_size = 4
    workdir = tmp_path_factory.mktemp("predict_run")
    assert train(c, workdir, progress=False)["status"] == "finished"
    return workdir


def _video(out_dir: Path, dfew_raw: Path) -> Path:
    """The first clip's frames as ``<clip id>.mp4`` (its landmark file is ``landmarks/<clip id>.npy``)."""
    folder = sorted((dfew_raw / "Clip" / "clip_224x224").iterdir())[0]
    path = out_dir / f"{folder.name}.mp4"
    frames = [cv2.imread(str(f)) for f in sorted(folder.iterdir())]
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def test_predict_video_folder_and_corrupt_file(run_dir, dfew_raw, tmp_path, capsys):
    from fer_jax import predict

    video = _video(tmp_path, dfew_raw)
    folder = sorted((dfew_raw / "Clip" / "clip_224x224").iterdir())[1]
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00not a video" * 100)
    # in-process main(): the tiny model is registered in this process only
    # the fixture's shards are landmark-aligned from per-clip files: predict takes the same files
    lm_dir = dfew_raw / "landmarks"
    rc = predict.main(
        [
            "--workdir",
            str(run_dir),
            "--json",
            "--landmarks",
            str(lm_dir),
            str(video),
            str(corrupt),
            str(folder),
        ]
    )
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
        assert 0.0 <= row["face_found"] <= 1.0  # the fraction of kept frames with a detected face


def test_predictor_library_use_and_missing_input(run_dir):
    """The library path: Predictor restores the chosen checkpoint; a missing input raises."""
    from fer_jax.predict import Predictor

    p = Predictor(run_dir, "latest")
    spec = registry.input_spec(p.config)
    assert p.step == 2
    assert set(spec) == {"frames", "landmarks"}
    with pytest.raises(FileNotFoundError):
        p.predict(run_dir / "missing.mp4")


def test_landmark_aligned_run_without_landmarks_is_one_line(run_dir, dfew_raw, capsys):
    """A run built with --landmarks file:DIR and landmark alignment refuses inputs without landmarks
    instead of serving detector crops with template landmarks."""
    from fer_jax import predict

    folder = sorted((dfew_raw / "Clip" / "clip_224x224").iterdir())[1]
    assert predict.main(["--workdir", str(run_dir), str(folder)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--landmarks" in err[0], err


def test_record_settings_from_manifest():
    """predict rebuilds the builder's settings from the manifest's preprocessing block."""
    from fer_jax.preprocess.clip import EyeRecordSettings, FaceRecordSettings

    prep = {"dataset": "dfew", "fold": 1, "source": "video", "frames": 8, "size": 64, "encoding": "jpeg",
            "landmarks": "file:landmarks", "align": "landmarks", "enhance": False, "simulate_events": False,
            "bins": 3}  # fmt: skip
    s = FaceRecordSettings.from_manifest(prep)
    assert (s.frames, s.size, s.align, s.enhance, s.per_frame_landmarks) == (8, 64, "landmarks", False, True)
    assert {k: v for k, v in s.as_dict().items() if k in prep} == {
        k: v for k, v in prep.items() if k in s.as_dict()
    }
    e = EyeRecordSettings.from_manifest({"dataset": "see", "frames": 0, "size": 64, "events": "auto",
                                         "events_used": "raw", "bins": 3})  # fmt: skip
    assert (e.frames, e.events) == (0, "raw")


def test_no_face_found_is_said_on_stderr_and_in_json(run_dir, dfew_raw, monkeypatch, capsys):
    """A prediction from centre crops (no face in any frame) must not look like a confident answer."""
    from fer_jax import predict

    def no_face(self, path, *, landmarks=None):
        return {"probabilities": {n: 1 / 7 for n in self.class_names}, "face_found": 0.0}

    monkeypatch.setattr(predict.Predictor, "predict_details", no_face)
    folder = sorted((dfew_raw / "Clip" / "clip_224x224").iterdir())[1]
    assert predict.main(["--workdir", str(run_dir), "--json", str(folder)]) == 0
    r = capsys.readouterr()
    assert [ln for ln in r.err.splitlines() if ln.startswith("warning:")] == [
        f"warning: {folder}: no face found in any frame; this is the prediction of centre crops"
    ]
    assert json.loads(r.out.strip().splitlines()[-1])["face_found"] == 0.0


def test_detector_aligned_input_decodes_only_the_kept_frames(monkeypatch, tmp_path):
    """Without per-frame landmarks or events only the T kept frames are decoded (a long video is streamed,
    as the builder reads it), and they are the same frames the whole-clip path would keep."""
    from types import SimpleNamespace

    from fer_jax import predict
    from fer_jax.preprocess import video

    seen = []
    real = video.read_frames

    def spy(path, *, num_frames=None, hasher=None):
        seen.append(num_frames)
        return real(path, num_frames=num_frames, hasher=hasher)

    monkeypatch.setattr(video, "read_frames", spy)
    frames = [np.full((48, 48, 3), 10 * i, np.uint8) for i in range(20)]
    clip = tmp_path / "clip"
    clip.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(clip / f"{i}.png"), f)
    prep = {"frames": 4, "size": 32, "landmarks": "template", "align": "detector", "encoding": "jpeg"}
    run = SimpleNamespace(
        config=SimpleNamespace(data=SimpleNamespace(dataset="dfew")),
        info=SimpleNamespace(preprocessing=prep),
    )
    streamed = predict._record(clip, run)
    assert seen == [4]
    from fer_jax.preprocess.clip import FaceRecordSettings, make_face_record

    whole = make_face_record(real(clip), FaceRecordSettings.from_manifest(prep))
    assert [bytes(a) for a in streamed["frames"]] == [bytes(b) for b in whole["frames"]]
