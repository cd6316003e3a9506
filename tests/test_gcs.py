"""Remote run and data folders (``gs://``) end to end against a local GCS emulator (``gcp-storage-emulator``
on 127.0.0.1, in-process): shards copied to the bucket, a run trained in the bucket, stopped, resumed and
evaluated there, and no local ``gs:`` folder left behind (``Path("gs://b").absolute()`` made one).

The emulator settings that work (fixture ``gcs``):
- gcsfs (etils.epath's ``gs://`` backend): ``STORAGE_EMULATOR_HOST``, and
  ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` (else it probes the bucket type over gRPC, which the HTTP
  emulator does not serve: 60 s time-outs per call);
- orbax's arrays go through TensorStore's own GCS driver: ``TENSORSTORE_GCS_HTTP_URL`` (its endpoint),
  ``GOOGLE_AUTH_TOKEN_FOR_TESTING`` (a fixed token, so it never waits for a metadata server) and
  ``TENSORSTORE_GCS_HTTP_VERSION=1`` (the emulator speaks HTTP/1.1). Bucket names need >= 3 characters
  (TensorStore refuses ``gs://b``).
"""

import importlib.util
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import test_train_support as support

pytest.importorskip("gcsfs")
pytest.importorskip("gcp_storage_emulator")

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "fer-test"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """A GCS emulator on a free port of 127.0.0.1 with bucket ``fer-test``; the environment pointed at it."""
    import gcsfs
    from gcp_storage_emulator.server import create_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _add_generation_header()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    host = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", host)
        mp.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        mp.setenv("TENSORSTORE_GCS_HTTP_URL", host)
        mp.setenv("GOOGLE_AUTH_TOKEN_FOR_TESTING", "emulator")
        mp.setenv("TENSORSTORE_GCS_HTTP_VERSION", "1")
        mp.setenv("FER_JAX_DATA_CACHE", str(tmp_path_factory.mktemp("data_cache")))
        gcsfs.GCSFileSystem.clear_instance_cache()  # a filesystem made before the variables were set
        try:
            yield f"gs://{BUCKET}"
        finally:
            gcsfs.GCSFileSystem.clear_instance_cache()
            server.stop()


def _add_generation_header() -> None:
    """The emulator's media downloads lack the ``x-goog-generation`` header that real GCS sends and
    TensorStore's OCDBT reads ("Malformed StorageGeneration" on the second checkpoint write): add it."""
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    original = getattr(objects.download, "__wrapped__", objects.download)
    if original is not objects.download:
        return  # patched already

    def download(request, response, storage, *args, **kwargs):
        original(request, response, storage, *args, **kwargs)
        try:
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
            response["x-goog-generation"] = str(obj["generation"])
            response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))
        except Exception:  # not found: the handler set 404 already
            pass

    download.__wrapped__ = original
    objects.download = download  # objects.get calls it by name; the routing table holds the old one
    for _, handlers in server.HANDLERS:
        for method, fn in list(handlers.items()):
            if fn is original:
                handlers[method] = download


def _no_gs_folder(top: Path) -> list[str]:
    return [os.path.join(d, n) for d, dirs, _ in os.walk(top) for n in dirs if n.startswith("gs:")]


def test_paths_stay_remote(gcs, tmp_path, monkeypatch):
    """``as_path`` keeps a URI remote and makes a local path absolute; copy_tree and the manifest reader
    round-trip through the bucket."""
    from fer_jax.data.manifest import COMPLETE_MARKER, load_manifest, write_manifest
    from fer_jax.paths import as_path, copy_tree, is_remote, local_data_dir

    monkeypatch.chdir(tmp_path)
    assert is_remote(f"{gcs}/x") and not is_remote("runs/x")
    assert str(as_path(f"{gcs}/run")) == f"{gcs}/run"
    assert as_path("runs/x") == tmp_path / "runs" / "x"
    remote = as_path(f"{gcs}/unit/shards")
    with pytest.raises(ValueError, match="no dataset directory gs://"):  # GCS has no empty folders
        load_manifest(remote)
    write_manifest(remote, {"dataset": "see", "class_names": ["a", "b"]})
    with pytest.raises(ValueError, match="not a finished build"):
        load_manifest(remote)
    (remote / COMPLETE_MARKER).write_text("done\n")
    (remote / "sub").mkdir(exist_ok=True)
    (remote / "sub" / "x.bin").write_bytes(b"\x00\x01")
    assert load_manifest(f"{gcs}/unit/shards")["class_names"] == ["a", "b"]
    local = local_data_dir(f"{gcs}/unit/shards", quiet=True)
    assert local.is_dir() and (local / "sub" / "x.bin").read_bytes() == b"\x00\x01"
    assert copy_tree(local, as_path(f"{gcs}/unit/copy")) == 3
    assert sorted(p.name for p in as_path(f"{gcs}/unit/copy").iterdir()) == [
        COMPLETE_MARKER,
        "manifest.json",
        "sub",
    ]
    assert _no_gs_folder(tmp_path) == []


def test_logs_figures_and_outputs_reach_the_bucket(gcs, tmp_path, monkeypatch):
    """metrics.jsonl and TensorBoard files are staged locally and copied after an evaluation row and at
    close; a resumed writer appends to the bucket's rows; truncation, atomic writes and figures work on
    gs://; nothing named gs: appears locally."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fer_jax.cli import check_output_dir, write_atomic
    from fer_jax.paths import as_path, savefig
    from fer_jax.training.logging import MetricWriter, read_metrics, truncate_metrics

    monkeypatch.chdir(tmp_path)
    work = f"{gcs}/unit/run"
    w = MetricWriter(work)
    w.scalars(1, "train", {"loss": 1.5})
    assert read_metrics(work) == []  # a train row alone stays local until the next copy
    w.scalars(1, "test", {"uar": 0.25})  # an evaluation row copies the stage
    assert [r["split"] for r in read_metrics(work)] == ["train", "test"]
    w.scalars(2, "train", {"loss": 1.0})
    w.close()
    assert [r["step"] for r in read_metrics(work)] == [1, 1, 2]
    assert any(p.name.startswith("events.out.tfevents") for p in as_path(f"{work}/tb").iterdir())
    truncate_metrics(work, 1)
    w = MetricWriter(work)  # a resume: appends to the bucket's rows, which it copies down first
    w.scalars(2, "train", {"loss": 0.5})
    w.close()
    rows = read_metrics(work)
    assert [(r["step"], r["split"]) for r in rows] == [(1, "train"), (1, "test"), (2, "train")]
    assert rows[-1]["loss"] == 0.5
    out = check_output_dir(f"{work}/eval")
    write_atomic(out / "metrics.json", '{"uar": 0.5}\n')
    assert json.loads(as_path(f"{work}/eval/metrics.json").read_text()) == {"uar": 0.5}
    fig = plt.figure()
    savefig(fig, f"{work}/figures/x.png")
    plt.close(fig)
    assert as_path(f"{work}/figures/x.png").read_bytes()[:4] == b"\x89PNG"
    assert _no_gs_folder(tmp_path) == []


def test_fold_report_reads_and_writes_the_bucket(gcs, tmp_path, monkeypatch):
    """``fer_jax.report --folds gs://...`` finds the fold runs in the bucket, averages them and writes
    report.md and summary.json there."""
    from fer_jax.paths import as_path
    from fer_jax.report import main

    monkeypatch.chdir(tmp_path)
    runs = f"{gcs}/unit/folds"
    for k, (war, uar) in {1: (0.5, 0.4), 2: (0.7, 0.6)}.items():
        wd = as_path(f"{runs}/fold{k}")
        (wd / "config.json").write_text(json.dumps({"data": {"eval_split": f"fold{k}_test"}}))
        m = {"war": war, "uar": uar, "macro_f1": uar, "num_examples": 10, "per_class": {"happy": uar}}
        (wd / "eval" / f"fold{k}_test-best" / "metrics.json").write_text(json.dumps(m))
    assert main(["--folds", runs, "--out", f"{runs}/report.md"]) == 0
    summary = json.loads(as_path(f"{runs}/summary.json").read_text())
    assert summary["num_folds"] == 2 and summary["mean"]["war"] == pytest.approx(0.6)
    assert "| **mean** | 60.0" in as_path(f"{runs}/report.md").read_text()
    assert _no_gs_folder(tmp_path) == []


def _demo_see(data_dir: str):
    spec = importlib.util.spec_from_file_location("configs.demo_see", ROOT / "configs" / "demo_see.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = support.shrink_to_fixture_shards(module.get_config(), data_dir, steps=4)
    config.train.num_epochs = 0
    config.train.eval_every_steps = 2
    config.train.checkpoint_every_steps = 2
    return config


class _SigtermAfter:
    """A DataSource whose train iterator sends this process SIGTERM when batch ``n`` is taken: the loop's
    own signal handler then stops the run at a step boundary, as a pre-empted VM's would."""

    def __init__(self, n: int):
        from fer_jax.training.data import PipelineData

        self.inner, self.n = PipelineData(), n

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def train_iterator(self, config, **kwargs):
        import signal

        it, n = self.inner.train_iterator(config, **kwargs), self.n

        class Iterator:
            def __init__(self):
                self.taken = 0

            def __iter__(self):
                return self

            def __next__(self):
                self.taken += 1
                if self.taken == n:
                    os.kill(os.getpid(), signal.SIGTERM)
                return next(it)

            def get_state(self):
                return it.get_state()

            def set_state(self, state):
                it.set_state(state)

        return Iterator()


@pytest.mark.slow  # 181-249 s on the shared 2-core machine (MCO-E Net's compiles dominate): over the 3-minute bar
@pytest.mark.usefixtures("module_compile_cache", "fast_compile")
def test_build_train_kill_resume_evaluate_under_gs(gcs, see_raw, tmp_path, monkeypatch, capsys):
    """Shards, run folder, checkpoints, TensorBoard, manifest and evaluation output all under gs://: the
    build writes into the bucket, SIGTERM stops the run and it saves, the rerun resumes from that step and
    finishes, evaluate writes to the bucket; a second build call finds the bucket's build finished."""
    from data_prep import build
    from fer_jax.evaluate import evaluate
    from fer_jax.paths import as_path
    from fer_jax.training.loop import train

    monkeypatch.chdir(tmp_path)  # a path made relative to the cwd would land here
    data = f"{gcs}/data/see"
    argv = ["--dataset", "see", "--root", str(see_raw), "--out", data, "--frames", "8", "--size", "64",
            "--workers", "1", "--quiet"]  # fmt: skip
    assert build.main(argv) == 0
    assert "uploaded" in capsys.readouterr().out
    assert (as_path(data) / "_BUILD_COMPLETE").exists() and (as_path(data) / "manifest.json").exists()
    assert build.main(argv) == 0  # the bucket's build, mirrored: nothing to do, nothing uploaded
    again = capsys.readouterr().out
    assert "already built" in again and "uploaded" not in again
    work = f"{gcs}/runs/see"
    config = _demo_see(data)

    first = train(config, work, data=_SigtermAfter(4), progress=False)  # 2 batches are prefetched
    assert first["status"] == "interrupted" and 1 <= first["step"] < 4, first
    stopped = first["step"]
    run = as_path(work)
    saved_steps = [int(p.name) for p in (run / "checkpoints" / "latest").iterdir() if p.name.isdigit()]
    assert max(saved_steps) == stopped  # saved on the signal

    second = train(config, work, progress=False)
    assert second["status"] == "finished" and second["step"] == 4, second
    out = capsys.readouterr().out
    assert f"resuming mco_e_net from step {stopped} of 4" in out, out[-2000:]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4]  # no step logged twice
    assert json.loads((run / "manifest.json").read_text())["dataset"] == "see"
    assert (run / "config.json").exists() and (run / "figures" / "confusion.png").exists()
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    assert 4 in [int(p.name) for p in (run / "checkpoints" / "latest").iterdir() if p.name.isdigit()]

    m = evaluate(work, checkpoint="latest")
    assert m["checkpoint_step"] == 4 and m["out_dir"].startswith(f"{work}/eval/")
    assert 0.0 <= m["uar"] <= 1.0 and int(np.sum(m["confusion"])) == m["num_examples"] > 0
    saved = json.loads(as_path(f"{m['out_dir']}/metrics.json").read_text())
    assert saved["checkpoint_step"] == 4 and as_path(f"{m['out_dir']}/predictions.jsonl").exists()
    assert _no_gs_folder(tmp_path) == [] and _no_gs_folder(ROOT) == []
