"""Nothing lost, nothing silent, on the CLI side: every bad input to ``fer_jax.train``, ``evaluate``,
``predict``, ``interpret``, ``convert`` and ``report`` gives its exit status and a one-line message naming
the problem, and nothing valid is changed; predict's streaming keeps memory bounded on long inputs and
gives the same record as reading the whole clip. The data side is test_robustness_data.py.

The CLIs are called in-process (``main(argv)``): a subprocess costs seconds of JAX import. One small run
(a tiny registered model trained 4 steps on the dfew fixture, checkpoints at steps 2 and 4, evaluated once)
is shared by the module; tests that damage a run work on a copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import weakref
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import tiny_model  # noqa: E402  registers the tiny model (tests/tiny_model.py)
from flax import nnx

from fer_jax import cli, evaluate, predict, report
from fer_jax import train as train_cli
from fer_jax.convert import __main__ as convert_cli
from fer_jax.interpret import __main__ as interpret_cli

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("module_compile_cache")


# ---- helpers --------------------------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (or ``root`` itself) with its content hash: equal = nothing changed."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): hashlib.sha1(p.read_bytes()).hexdigest() for p in files}


def _call(main, argv: list[str], capsys) -> tuple[int, str, str]:
    """``(exit status, stderr, stdout)`` of an in-process CLI call (argparse exits become statuses)."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.err, out.out


def _one_error(err: str, *words: str) -> str:
    """The single ``error:`` line on stderr (notes aside), with every word in it; no traceback."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("note:", "warning:"))]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def _copy(run: Path, tmp_path: Path, name: str = "run") -> Path:
    dst = tmp_path / name
    shutil.copytree(run, dst)
    return dst


def _corrupt_step(workdir: Path, step: int, which: str = "latest") -> None:
    """Truncates the step's meta item: orbax cannot read the step any more."""
    step_dir = workdir / "checkpoints" / which / str(step)
    meta = next(p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "meta")
    meta.write_text(meta.read_text()[:5])


@pytest.fixture(scope="module")
def run_dir(dfew_shards, tmp_path_factory) -> Path:
    """4 steps, checkpoints kept at 2 and 4, evaluated (eval/test-best/metrics.json for report)."""
    from configs.common import base_config
    from fer_jax.training.loop import train

    c = base_config()
    c.model.name = tiny_model.NAME
    c.data.dir = str(dfew_shards)
    c.data.num_frames, c.data.image_size = 8, 64
    c.train.batch_size, c.train.num_steps, c.train.eval_every_steps = 2, 4, 4
    c.train.checkpoint_every_steps, c.train.keep_checkpoints = 2, 3
    c.eval.batch_size = 4
    workdir = tmp_path_factory.mktemp("robust_cli") / "run"
    assert train(c, workdir, progress=False)["status"] == "finished"
    evaluate.evaluate(workdir)
    return workdir


@pytest.fixture
def afile(tmp_path) -> Path:
    p = tmp_path / "notes.txt"
    p.write_text("a user's file\n")
    return p


# ---- evaluate ---------------------------------------------------------------------------------------------


def test_evaluate_empty_folder_names_the_missing_config(tmp_path, capsys):
    rc, err, _ = _call(evaluate.main, ["--workdir", str(tmp_path)], capsys)
    assert rc == 1
    _one_error(err, "config.json not found", "training workdir")
    assert list(tmp_path.iterdir()) == []  # nothing created in a folder that is no run


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("config.json", "{not json", ("the run's config", "config.json is not valid JSON")),
        ("config.json", "", ("config.json is not valid JSON",)),
        ("config.json", "[1, 2]", ("config.json holds a JSON list",)),
        ("manifest.json", '{"class_names": ', ("the run's manifest", "manifest.json is not valid JSON")),
    ],
)
def test_evaluate_damaged_run_files_are_one_line_naming_them(run_dir, tmp_path, capsys, name, text, words):
    run = _copy(run_dir, tmp_path)
    (run / name).write_text(text)
    before = _snapshot(run)
    rc, err, _ = _call(evaluate.main, ["--workdir", str(run), "--out", str(tmp_path / "o")], capsys)
    assert rc == 1
    _one_error(err, *words)
    assert _snapshot(run) == before and not (tmp_path / "o").exists()


def test_evaluate_run_without_checkpoints(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path)
    shutil.rmtree(run / "checkpoints")
    rc, err, _ = _call(evaluate.main, ["--workdir", str(run)], capsys)
    assert rc == 1
    _one_error(err, "no checkpoints in")


@pytest.mark.parametrize("value", ["foo", "-1", "1.5", ""])
def test_checkpoint_flag_is_checked_before_anything_runs(run_dir, capsys, value):
    before = _snapshot(run_dir)
    for main, extra in ((evaluate.main, []), (predict.main, ["clip.mp4"]), (interpret_cli.main, [])):
        rc, err, _ = _call(main, ["--workdir", str(run_dir), "--checkpoint", value, *extra], capsys)
        assert rc == 2
        _one_error(err, "--checkpoint", "best, latest or a step number")
    assert _snapshot(run_dir) == before


def test_evaluate_step_that_is_not_kept_lists_the_kept_ones(run_dir, tmp_path, capsys):
    rc, err, _ = _call(
        evaluate.main,
        ["--workdir", str(run_dir), "--checkpoint", "999", "--out", str(tmp_path / "o")],
        capsys,
    )
    assert rc == 1
    _one_error(err, "no checkpoint at step 999", "kept: [2, 4]")


@pytest.mark.parametrize("below", [False, True])
def test_evaluate_out_that_is_a_file_is_refused_before_evaluating(run_dir, afile, capsys, monkeypatch, below):
    from fer_jax.training.run import Run

    monkeypatch.setattr(Run, "restore", lambda *a, **k: pytest.fail("evaluated although --out is bad"))
    out = afile / "eval" if below else afile
    before = _snapshot(afile)
    rc, err, _ = _call(evaluate.main, ["--workdir", str(run_dir), "--out", str(out)], capsys)
    assert rc == 2
    _one_error(err, "--out", "which is a file" if below else "is a file")
    assert _snapshot(afile) == before


def test_evaluate_unknown_split_names_the_splits(run_dir, tmp_path, capsys):
    rc, err, _ = _call(
        evaluate.main, ["--workdir", str(run_dir), "--split", "val", "--out", str(tmp_path / "o")], capsys
    )
    assert rc == 1
    _one_error(err, "no split 'val'", "'test', 'train'")
    assert not (tmp_path / "o" / "metrics.json").exists()


@pytest.mark.parametrize("where", ["other dataset", "gone"])
def test_evaluate_run_whose_shards_changed(run_dir, see_shards, tmp_path, capsys, where):
    """A run whose config names the other dataset's shards (or shards that were deleted)."""
    run = _copy(run_dir, tmp_path)
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"]["dir"] = str(see_shards if where == "other dataset" else tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(cfg))
    before = _snapshot(run)
    rc, err, _ = _call(evaluate.main, ["--workdir", str(run), "--out", str(tmp_path / "o")], capsys)
    assert rc == 1
    _one_error(err, *(("holds 'see'", "'dfew'") if where == "other dataset" else ("no dataset directory",)))
    assert _snapshot(run) == before


def test_evaluate_latest_falls_back_past_an_unreadable_step(run_dir, tmp_path, capsys):
    """As train's resume: the newest kept step is unreadable -> the previous one, with a note naming it;
    nothing renamed (evaluation is read-only)."""
    run = _copy(run_dir, tmp_path)
    _corrupt_step(run, 4)
    out = tmp_path / "o"
    rc, err, _ = _call(evaluate.main, ["--workdir", str(run), "--checkpoint", "latest", "--out", str(out), "--json"],
                       capsys)  # fmt: skip
    assert rc == 0, err
    notes = [ln for ln in err.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "checkpoint step 4 is unreadable" in notes[0] and "using step 2" in notes[0]
    assert json.loads((out / "metrics.json").read_text())["checkpoint_step"] == 2
    assert (run / "checkpoints" / "latest" / "4").is_dir()  # left in place
    # naming the bad step explicitly is refused in one line, not answered from another step
    rc, err, _ = _call(evaluate.main, ["--workdir", str(run), "--checkpoint", "4", "--out", str(out)], capsys)
    assert rc == 1
    _one_error(err, "checkpoint step 4 is unreadable")


def test_evaluate_json_stdout_is_one_json_document(run_dir, tmp_path, capsys):
    """--json is for scripts: stdout parses as JSON (one run: its metrics; several: {workdir: metrics}), the
    'wrote ...' lines stay off it."""
    a, b = _copy(run_dir, tmp_path, "a"), _copy(run_dir, tmp_path, "b")
    rc, err, out = _call(evaluate.main, ["--workdir", str(a), "--json"], capsys)
    assert rc == 0, err
    one = json.loads(out)
    assert one.pop("out_dir") == str(a / "eval" / "test-best")  # where the files went, then the metrics
    assert one == json.loads((a / "eval" / "test-best" / "metrics.json").read_text())
    rc, err, out = _call(evaluate.main, ["--workdir", str(a), str(b), "--json"], capsys)
    assert rc == 0, err
    both = json.loads(out)
    assert set(both) == {str(a), str(b)} and both[str(b)]["uar"] == one["uar"]


def test_evaluate_unreadable_best_says_how_to_use_latest(run_dir, tmp_path, capsys):
    """The best step is not swapped silently for another one: one line naming it and the way out."""
    run = _copy(run_dir, tmp_path)
    _corrupt_step(run, 4, "best")
    out = tmp_path / "o"
    rc, err, _ = _call(evaluate.main, ["--workdir", str(run), "--out", str(out)], capsys)
    assert rc == 1
    _one_error(err, "best checkpoint step 4 is unreadable", "--checkpoint latest")
    assert not out.exists()
    rc, err, _ = _call(
        evaluate.main, ["--workdir", str(run), "--checkpoint", "latest", "--out", str(out)], capsys
    )
    assert rc == 0 and json.loads((out / "metrics.json").read_text())["checkpoint_step"] == 4


def test_ctrl_c_during_evaluate_keeps_the_earlier_results(run_dir, tmp_path, capsys, monkeypatch):
    from fer_jax.training.run import Run

    run = _copy(run_dir, tmp_path)
    before = _snapshot(run / "eval")

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Run, "evaluate", interrupted)
    rc, err, _ = _call(evaluate.main, ["--workdir", str(run)], capsys)
    assert rc == 130 and err.strip().splitlines() == [f"interrupted while evaluating {run}"]
    assert _snapshot(run / "eval") == before


def test_write_atomic_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    path.write_text('{"uar": 0.5}\n')

    def stopped(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", stopped)
    with pytest.raises(KeyboardInterrupt):
        cli.write_atomic(path, '{"uar": 0.9}\n')
    assert path.read_text() == '{"uar": 0.5}\n' and list(tmp_path.iterdir()) == [path]  # no temp left


@pytest.mark.parametrize(
    "argv", [["--workdir"], ["--workdir", "x", "--passes", "two"], ["--workdir", "x", "--bogus"]]
)
def test_evaluate_bad_flags_are_one_line_not_a_usage_dump(capsys, argv):
    rc, err, _ = _call(evaluate.main, argv, capsys)
    assert rc == 2
    _one_error(err, "(see --help)")


# ---- predict ----------------------------------------------------------------------------------------------


def test_predict_missing_run_is_one_line(tmp_path, capsys):
    rc, err, _ = _call(predict.main, ["--workdir", str(tmp_path / "nope"), str(tmp_path)], capsys)
    assert rc == 1
    _one_error(err, "config.json not found")


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda d, f: f, ("unknown video type '.txt'",)),
        (lambda d, f: d / "missing.mp4", ("does not exist",)),
        (lambda d, f: (d / "empty").mkdir() or d / "empty", ("no image files",)),
        (lambda d, f: (d / "bad.mp4").write_bytes(b"\0" * 300) and d / "bad.mp4", ("unreadable video",)),
    ],
)
def test_predict_bad_inputs_are_one_line_each(run_dir, dfew_raw, tmp_path, afile, capsys, make, words):
    bad = make(tmp_path, afile)
    good = sorted((dfew_raw / "Clip" / "clip_224x224").iterdir())[0]
    lms = str(dfew_raw / "landmarks")
    rc, err, out = _call(predict.main, ["--workdir", str(run_dir), "--landmarks", lms, "--json", str(bad), str(good)],
                         capsys)  # fmt: skip
    assert rc == 1  # one input failed; the other one is still answered
    _one_error(err, str(bad), *words)
    assert [json.loads(ln)["input"] for ln in out.splitlines()] == [str(good)]


@pytest.mark.parametrize(
    "content, words",
    [
        (np.zeros((3, 5)), "has shape (3, 5), expected (n, 68, 2)"),
        (np.full((2, 68, 2), np.nan), "non-finite"),
    ],
)
def test_predict_bad_landmark_file(run_dir, dfew_raw, tmp_path, capsys, content, words):
    lm = tmp_path / "lm.npy"
    np.save(lm, content)
    clip = sorted((dfew_raw / "Clip" / "clip_224x224").iterdir())[0]
    rc, err, _ = _call(predict.main, ["--workdir", str(run_dir), "--landmarks", str(lm), str(clip)], capsys)
    assert rc == 1
    _one_error(err, str(lm), words)


def test_predict_landmark_folder_without_the_inputs_file(run_dir, dfew_raw, tmp_path, capsys):
    """--landmarks DIR without <input name>.npy: one line naming the file it looked for."""
    clip = sorted((dfew_raw / "Clip" / "clip_224x224").iterdir())[0]
    rc, err, _ = _call(
        predict.main, ["--workdir", str(run_dir), "--landmarks", str(tmp_path), str(clip)], capsys
    )
    assert rc == 1
    _one_error(err, str(tmp_path / f"{clip.name}.npy"), "FileNotFoundError")


def test_predict_latest_falls_back_past_an_unreadable_step(run_dir, dfew_raw, tmp_path, capsys):
    run = _copy(run_dir, tmp_path)
    _corrupt_step(run, 4)
    clip = sorted((dfew_raw / "Clip" / "clip_224x224").iterdir())[0]
    argv = [
        "--workdir",
        str(run),
        "--checkpoint",
        "latest",
        "--landmarks",
        str(dfew_raw / "landmarks"),
        "--json",
    ]
    rc, err, out = _call(predict.main, [*argv, str(clip)], capsys)
    assert rc == 0, err
    assert [ln for ln in err.splitlines() if "unreadable" in ln] == [
        next(ln for ln in err.splitlines() if ln.startswith("note: checkpoint step 4 is unreadable"))
    ]
    assert json.loads(out)["input"] == str(clip)


def test_ctrl_c_during_predict_is_one_line(run_dir, dfew_raw, capsys, monkeypatch):
    def interrupted(self, path, *, landmarks=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict.Predictor, "predict_details", interrupted)
    clip = sorted((dfew_raw / "Clip" / "clip_224x224").iterdir())[0]
    rc, err, _ = _call(predict.main, ["--workdir", str(run_dir), str(clip)], capsys)
    assert rc == 130 and err.strip().splitlines() == [f"interrupted at {clip}"]


# ---- predict streaming: bounded memory, same record ---------------------------------------------------------


def _moving_frames(n: int, size: int = 40) -> list[np.ndarray]:
    """A bright square drifting over a textured background (events fire; a Haar face is not needed)."""
    rng = np.random.default_rng(0)
    base = rng.integers(40, 90, (size, size, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        f = base.copy()
        x = (2 * i) % (size - 10)
        f[10:20, x : x + 10] = 220
        out.append(f)
    return out


def _write_video(path: Path, frames: list[np.ndarray]) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _fake_run(dataset: str, prep: dict) -> SimpleNamespace:
    return SimpleNamespace(
        config=SimpleNamespace(data=SimpleNamespace(dataset=dataset)),
        info=SimpleNamespace(preprocessing=prep),
    )


# frames alive at once while streaming: the held ones, the frame just decoded and the previous one (still
# referenced by the consumer's loop variable)
_IN_FLIGHT = 2


class _AliveFrames:
    """Wraps ``video.iter_frames``: counts the decoded frames and the most of them alive at once."""

    def __init__(self, monkeypatch):
        from fer_jax.preprocess import video

        self.decoded, self.most_alive, self.refs = 0, 0, []
        real = video.iter_frames

        def spy(path):
            for frame in real(path):
                self.decoded += 1
                self.refs.append(weakref.ref(frame))
                self.most_alive = max(self.most_alive, sum(r() is not None for r in self.refs))
                yield frame

        monkeypatch.setattr(video, "iter_frames", spy)


def _same_record(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, str):
            assert x == y, k
        elif isinstance(x, np.ndarray) and x.dtype == object:
            assert [bytes(v) for v in x] == [bytes(v) for v in y], k
        else:
            np.testing.assert_allclose(
                np.asarray(x, np.float64), np.asarray(y, np.float64), atol=1e-5, err_msg=k
            )


def test_predict_streams_a_long_video_with_events_and_landmark_files(tmp_path, monkeypatch):
    """DFEW-style run with simulated events and per-clip landmark files: a 240-frame video is streamed
    (at most the kept frames, their predecessors and frame 0 alive), and the record equals the one built
    from every frame held in memory."""
    from fer_jax.preprocess.clip import FaceRecordSettings, make_face_record
    from fer_jax.preprocess.landmarks import load_landmark_file
    from fer_jax.preprocess.video import read_frames

    n, t = 240, 4
    video = _write_video(tmp_path / "long.avi", _moving_frames(n))
    from fer_jax.data.constants import TEMPLATE_68

    lms = np.stack([TEMPLATE_68 * 30 + 5 + 0.01 * i for i in range(n)]).astype(np.float32)
    np.save(tmp_path / "long.npy", lms)
    prep = {"frames": t, "size": 32, "encoding": "raw", "landmarks": "file:x", "align": "landmarks",
            "enhance": False, "simulate_events": True, "bins": 3}  # fmt: skip
    alive = _AliveFrames(monkeypatch)
    streamed = predict._record(video, _fake_run("dfew", prep), landmarks=tmp_path / "long.npy")
    assert alive.most_alive <= (2 * t + 1) + _IN_FLIGHT, alive.most_alive  # kept, predecessors, frame 0
    settings = FaceRecordSettings.from_manifest(prep)
    whole = make_face_record(
        read_frames(video), settings, landmarks=load_landmark_file(tmp_path / "long.npy", n)
    )
    _same_record(streamed, whole)
    assert "event" in streamed and np.abs(streamed["event"].astype(np.float32)).sum() > 0  # events did fire


def test_predict_streams_per_frame_landmark_models(tmp_path, monkeypatch):
    """A landmark model run on every frame (lbf:) sees each frame once, streamed; same record as the
    whole clip in memory."""
    from fer_jax.preprocess import clip as clip_lib

    def fake_model(frames, settings, *, landmark_file=None):  # landmarks that depend on every frame
        rows, prev = [], 0.0
        for f in frames:
            prev = 0.5 * prev + float(f.mean())
            rows.append(clip_lib.TEMPLATE_68 * 30 + prev / 50)
        return np.stack(rows).astype(np.float32), []

    monkeypatch.setattr(clip_lib, "face_landmarks", fake_model)
    n, t = 150, 4
    video = _write_video(tmp_path / "long.avi", _moving_frames(n))
    prep = {"frames": t, "size": 32, "encoding": "raw", "landmarks": "lbf:model.yaml", "align": "landmarks",
            "enhance": False}  # fmt: skip
    alive = _AliveFrames(monkeypatch)
    streamed = predict._record(video, _fake_run("dfew", prep))
    assert alive.decoded == n and alive.most_alive <= (t + 1) + _IN_FLIGHT, (alive.decoded, alive.most_alive)
    from fer_jax.preprocess.video import read_frames

    frames = read_frames(video)
    settings = clip_lib.FaceRecordSettings.from_manifest(prep)
    _same_record(
        streamed, clip_lib.make_face_record(frames, settings, landmarks=fake_model(frames, settings)[0])
    )


def test_predict_streams_simulated_see_events(tmp_path, monkeypatch):
    """Plain RGB input of a SEE-style run: event frames simulated while the frames stream past
    (EventSimulator), equal to simulating the whole clip at once; only the kept frames stay alive."""
    from fer_jax.preprocess.clip import EyeRecordSettings, make_eye_record
    from fer_jax.preprocess.video import read_frames

    n, k = 200, 4
    video = _write_video(tmp_path / "eye.avi", _moving_frames(n))
    prep = {"frames": k, "size": 32, "encoding": "raw", "events": "auto", "events_used": "frames"}
    alive = _AliveFrames(monkeypatch)
    streamed = predict._record(video, _fake_run("see", prep))
    assert alive.most_alive <= k + _IN_FLIGHT, alive.most_alive
    rgb = read_frames(video)
    whole = make_eye_record(rgb, predict._simulated_event_frames(rgb), EyeRecordSettings.from_manifest(prep))
    _same_record(streamed, whole)
    assert len({bytes(e) for e in streamed["event"]}) > 1  # not all grey: events were drawn


def test_predict_see_folder_pair_decodes_only_the_kept_frames(tmp_path, monkeypatch):
    from fer_jax.preprocess import video
    from fer_jax.preprocess.clip import EyeRecordSettings, make_eye_record

    n, k = 60, 4
    for sub in ("frame", "event"):
        (tmp_path / "seq" / sub).mkdir(parents=True)
        for i, f in enumerate(_moving_frames(n)):
            cv2.imwrite(str(tmp_path / "seq" / sub / f"{i}.png"), f if sub == "frame" else 255 - f)
    decoded = []
    real = video.decode_image
    monkeypatch.setattr(video, "decode_image", lambda data, name="": decoded.append(name) or real(data, name))
    prep = {"frames": k, "size": 32, "encoding": "raw", "events": "auto", "events_used": "frames"}
    streamed = predict._record(tmp_path / "seq", _fake_run("see", prep))
    assert len(decoded) == 2 * k, decoded
    whole = make_eye_record(video.read_frames(tmp_path / "seq" / "frame"), video.read_frames(tmp_path / "seq" / "event"),
                            EyeRecordSettings.from_manifest(prep))  # fmt: skip
    _same_record(streamed, whole)


def test_streamed_clip_refuses_frames_it_did_not_keep(tmp_path):
    from fer_jax.preprocess.video import StreamedClip

    video = _write_video(tmp_path / "v.avi", _moving_frames(12))
    clip = StreamedClip(video, [0, 5]).load()
    assert len(clip) == 12 and sorted(clip.held) == [0, 5]
    with pytest.raises(IndexError, match="frame 6 .* is not held"):
        clip[6]
    with pytest.raises(ValueError, match="outside the 12"):
        StreamedClip(video, [12])


# ---- interpret ----------------------------------------------------------------------------------------------


def test_interpret_clip_past_the_split_is_refused_before_the_work(run_dir, tmp_path, capsys, monkeypatch):
    from fer_jax.interpret import report as interpret_report

    monkeypatch.setattr(interpret_report, "interpret", lambda *a, **k: pytest.fail("ran"))
    out = tmp_path / "i"
    rc, err, _ = _call(interpret_cli.main, ["--workdir", str(run_dir), "--clips", "0", "3", "99", "--out", str(out)],
                       capsys)  # fmt: skip
    assert rc == 2
    _one_error(err, "--clips 3 99", "split 'test' has 3 clips", "0-2")
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, words", [(["--clips", "-1"], "non-negative"), (["--layer", "fc"], "invalid choice")]
)
def test_interpret_bad_flags(run_dir, capsys, argv, words):
    rc, err, _ = _call(interpret_cli.main, ["--workdir", str(run_dir), *argv], capsys)
    assert rc == 2
    _one_error(err, words)


def test_ctrl_c_during_interpret_is_one_line(run_dir, tmp_path, capsys, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(interpret_cli, "interpret", interrupted)
    rc, err, _ = _call(interpret_cli.main, ["--workdir", str(run_dir), "--out", str(tmp_path / "i")], capsys)
    assert rc == 130 and err.strip().splitlines() == [f"interrupted while interpreting {run_dir}"]


def test_interpret_out_that_is_a_file(run_dir, afile, capsys):
    before = _snapshot(afile)
    rc, err, _ = _call(interpret_cli.main, ["--workdir", str(run_dir), "--out", str(afile)], capsys)
    assert rc == 2
    _one_error(err, "--out", "is a file")
    assert _snapshot(afile) == before


def test_interpret_damaged_config_names_it(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path)
    (run / "config.json").write_text("{")
    rc, err, _ = _call(interpret_cli.main, ["--workdir", str(run)], capsys)
    assert rc == 2
    _one_error(err, "config.json is not valid JSON")


# ---- convert ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def r18_weights(tmp_path_factory) -> Path:
    """A random resnet18 state dict as .safetensors (the torchvision key names and shapes)."""
    from safetensors.numpy import save_file

    from fer_jax.convert import tables
    from fer_jax.models.resnet import resnet18

    model = resnet18(num_classes=1000, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    sd = {}
    for e in tables.key_table("resnet18", model):
        node = model
        for part in e.nnx_path:
            node = node[part] if isinstance(part, int) else getattr(node, part)
        shape = np.asarray(node[...]).shape
        if len(shape) == 4:  # HWIO -> OIHW
            shape = (shape[3], shape[2], shape[0], shape[1])
        elif len(shape) == 2:
            shape = shape[::-1]
        sd[e.torch_key] = rng.normal(size=shape).astype(np.float32) * 0.01
    path = tmp_path_factory.mktemp("r18") / "r18.safetensors"
    save_file(sd, str(path))
    return path


def test_convert_wrong_arch_is_one_line(tmp_path, capsys):
    rc, err, _ = _call(convert_cli.main, ["--arch", "resnet99", "--weights", "w.safetensors", "--out", str(tmp_path)],
                       capsys)  # fmt: skip
    assert rc == 2
    _one_error(err, "invalid choice: 'resnet99'", "resnet18")


@pytest.mark.parametrize("below", [False, True])
def test_convert_out_that_is_a_file_is_refused_before_reading(afile, capsys, below):
    before = _snapshot(afile)
    out = afile / "conv" if below else afile
    rc, err, _ = _call(convert_cli.main, ["--arch", "resnet18", "--weights", "none.safetensors", "--out", str(out)],
                       capsys)  # fmt: skip
    assert rc == 2
    _one_error(err, "--out", "file")
    assert _snapshot(afile) == before


def test_ctrl_c_during_convert_leaves_no_partial_output(r18_weights, tmp_path, capsys, monkeypatch):
    from fer_jax import convert

    real = convert.save_converted

    def stopped(model, out_dir, **kw):
        real(model, out_dir, **kw)  # the checkpoint is written, then the user presses Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(convert_cli, "save_converted", stopped)
    fresh, users = tmp_path / "fresh", tmp_path / "users"
    users.mkdir()
    (users / "README").write_text("mine\n")
    for out in (fresh, users):
        rc, err, _ = _call(convert_cli.main, ["--arch", "resnet18", "--weights", str(r18_weights), "--out", str(out)],
                           capsys)  # fmt: skip
        assert rc == 130 and len(err.strip().splitlines()) == 1 and "interrupted" in err
    assert not fresh.exists()
    assert _snapshot(users) == {str(users / "README"): hashlib.sha1(b"mine\n").hexdigest()}
    monkeypatch.setattr(convert_cli, "save_converted", real)  # the next run is not blocked
    rc, err, _ = _call(convert_cli.main, ["--arch", "resnet18", "--weights", str(r18_weights), "--out", str(fresh)],
                       capsys)  # fmt: skip
    assert rc == 0, err
    # a second conversion into the same folder is refused and keeps the first one
    before = _snapshot(fresh)
    rc, err, _ = _call(convert_cli.main, ["--arch", "resnet18", "--weights", str(r18_weights), "--out", str(fresh)],
                       capsys)  # fmt: skip
    assert rc == 2
    _one_error(err, "already exists")
    assert _snapshot(fresh) == before


# ---- report -------------------------------------------------------------------------------------------------


def _report(capsys, tmp_path, *argv: str) -> tuple[int, str]:
    rc, err, _ = _call(report.main, ["--out", str(tmp_path / "rep" / "report.md"), *argv], capsys)
    return rc, err


def test_report_run_without_an_evaluation_says_what_to_run(tmp_path, capsys):
    rc, err = _report(capsys, tmp_path, "--run", f"a={tmp_path / 'never'}")
    assert rc == 2
    _one_error(err, "metrics.json not found", "python -m fer_jax.evaluate --workdir")
    assert not (tmp_path / "rep").exists()


def test_report_duplicate_run_names_are_refused(run_dir, tmp_path, capsys):
    rc, err = _report(capsys, tmp_path, "--run", f"a={run_dir}", "--run", f"a={tmp_path}")
    assert rc == 2
    _one_error(err, "--run a given twice")
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--max-minutes", "10"], "--max-minutes needs --started"),
        (["--max-minutes", "-3", "--started", "1700000000"], "--max-minutes must be a positive number"),
        (["--started", "99999999999"], "is not a UNIX time in the past"),
        (["--started", "nan"], "is not a UNIX time in the past"),
        (["--target", "a.uar>=0.8.1"], "bad --target 'a.uar>=0.8.1'"),
        (["--compare-lighting", "a,a,low,x"], "bad --compare-lighting"),
        (["--run", "nameonly"], "bad --run 'nameonly'"),
    ],
)
def test_report_bad_flag_values_are_refused(run_dir, tmp_path, capsys, argv, words):
    rc, err = _report(capsys, tmp_path, "--run", f"a={run_dir}", *argv)
    assert rc == 2
    _one_error(err, words)
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("kind", ["folder", "below a file"])
def test_report_out_that_is_a_folder_or_below_a_file(run_dir, tmp_path, afile, capsys, kind):
    out = tmp_path if kind == "folder" else afile / "report.md"
    before = _snapshot(tmp_path)
    rc, err, _ = _call(report.main, ["--out", str(out), "--run", f"a={run_dir}"], capsys)
    assert rc == 2
    _one_error(err, "--out", "is a folder" if kind == "folder" else "which is a file")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "text, words",
    [("[]", "holds a JSON list"), ('{"uar": 1}', "no number 'war'"), ("{", "is not valid JSON")],
)
def test_report_damaged_metrics_file_is_named(run_dir, tmp_path, capsys, text, words):
    run = _copy(run_dir, tmp_path, "damaged")
    (run / "eval" / "test-best" / "metrics.json").write_text(text)
    rc, err = _report(capsys, tmp_path, "--run", f"a={run}")
    assert rc == 2
    _one_error(err, "metrics", words)


def test_report_keeps_the_earlier_report_when_interrupted(run_dir, tmp_path, capsys, monkeypatch):
    rc, _ = _report(capsys, tmp_path, "--run", f"a={run_dir}")
    assert rc == 0
    before = _snapshot(tmp_path / "rep")

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "machine_description", stopped)
    rc, err = _report(capsys, tmp_path, "--run", f"b={run_dir}")
    assert rc == 130 and err.strip().splitlines() == ["interrupted while writing the report"]
    assert _snapshot(tmp_path / "rep") == before


# ---- train --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("below", [False, True])
def test_train_workdir_that_is_a_file_is_refused_at_start(afile, capsys, monkeypatch, below):
    from fer_jax.training import loop

    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(train_cli, "_CONFIG", SimpleNamespace(value=SimpleNamespace(get=lambda k: None)))
    monkeypatch.setattr(train_cli, "_WORKDIR", SimpleNamespace(value=str(afile / "run" if below else afile)))
    before = _snapshot(afile)
    rc, err, _ = _call(train_cli.main, ["train"], capsys)
    assert rc == 2
    _one_error(err, "--workdir", "file")
    assert _snapshot(afile) == before


@pytest.mark.parametrize("dataset", ["dfew", "see"])
def test_resume_on_the_other_datasets_shards_leaves_the_run_as_it_was(run_dir, see_shards, tmp_path, dataset):
    """A finished DFEW run pointed at SEE shards (config still saying dfew, or saying see): refused in one
    line naming the difference before anything in the run is written (was: config.json and manifest.json
    replaced, then grain's multi-line sampler error)."""
    import ml_collections

    from fer_jax.training.loop import train

    run = _copy(run_dir, tmp_path)
    before = _snapshot(run)
    c = ml_collections.ConfigDict(json.loads((run / "config.json").read_text()))
    c.data.dir, c.data.dataset = str(see_shards), dataset
    c.model.num_classes = None  # as a user's config: the class count comes from the data
    with pytest.raises(ValueError) as e:
        train(c, run, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "was trained on other data" in msg and '"dfew" in the run, "see" now' in msg, (
        msg
    )
    assert _snapshot(run) == before


def test_train_config_errors_name_the_file_and_the_field():
    typo = AttributeError(repr('\'num_step\'\nDid you mean "num_steps" instead of "num_step"?'))
    assert train_cli._config_error(typo) == (
        'no config field \'num_step\': Did you mean "num_steps" instead of "num_step"?'
    )
    line = train_cli._config_error(NameError("name 'hi' is not defined"), "my.json")
    assert line == "--config my.json: NameError: name 'hi' is not defined"
    assert train_cli._config_arg(["train", "--config=a.py", "--workdir", "w"]) == "a.py"
    assert train_cli._config_arg(["train", "--config", "b.py"]) == "b.py"


def test_train_override_of_an_unknown_field_is_one_line(tmp_path):
    """One real subprocess: absl parses the override (in-process parsing would change global flags)."""
    r = subprocess.run(
        [sys.executable, "-m", "fer_jax.train", "--config", "configs/demo_dfew.py", "--workdir",
         str(tmp_path / "run"), "--config.train.num_step=3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        'error: no config field \'num_step\': Did you mean "num_steps" instead of "num_step"?'
    ]
    assert not (tmp_path / "run").exists()
