"""predict serves the model exactly what evaluate fed it: a tiny synthetic DFEW with videos is built twice
(Haar-detector alignment with template landmarks; landmark alignment from per-clip files), a demo-sized
MambaFER run folder is written, ``evaluate`` writes predictions.jsonl, and
``Predictor(workdir).predict(video)`` (with the clip's landmark file for the landmark build) gives the
same probabilities within 1e-5.

The run's checkpoint is its initial state (``Run.create`` + ``save``, the same files a training writes):
parity does not depend on the weights' values, and compiling MambaFER's train step would add about four
minutes on 2 shared cores. Cost: about 2 min on 2 CPU cores (synthesis + two builds ~5 s, the jitted
init ~50 s, the eval step's compilations; the persistent compilation cache lets later evaluations and
predictions reuse the first's executables), hence slow-marked.
"""

import json
import shutil

import numpy as np
import pytest

# -O0 for the init, evaluate and predict alike: predict and evaluate run the same cached executable
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("module_fast_compile", "module_compile_cache")]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """10 synthetic DFEW clips of at most 10 frames, with Clip/original/<id>.mp4 videos."""
    from data_prep.synth import dfew

    out = tmp_path_factory.mktemp("parity_raw")
    plan = dfew.plan_clips(10, seed=3)
    for it in plan:
        it["num_frames"] = min(it["num_frames"], 10)
        dfew.write_clip(out, it, videos=True, nuisance=0.3)
    dfew.write_splits(out, plan)
    return out


def _build(raw, out, *extra):
    from data_prep import build

    args = ["--dataset", "dfew", "--root", str(raw), "--out", str(out), "--frames", "8", "--size", "64",
            "--source", "video", "--workers", "1", "--quiet", *extra]  # fmt: skip
    assert build.main(args) == 0
    return out


def _config(data_dir):
    from configs import demo_dfew

    c = demo_dfew.get_config()
    c.data.dir = str(data_dir)
    c.data.image_size, c.data.num_frames = 64, 4
    if "stored_frames" in c.data:
        c.data.stored_frames = 8
    c.data.num_workers = 0
    c.train.batch_size = 2
    c.eval.batch_size = 1  # the shape predict uses: one compiled eval step serves both
    return c


@pytest.fixture(scope="module")
def runs(raw, tmp_path_factory):
    """``{"detector": workdir, "landmarks": workdir}``: one run folder, copied for the second build (same
    model; the run's manifest and data.dir then describe the landmark-aligned shards)."""
    from fer_jax.training.run import Run

    base = tmp_path_factory.mktemp("parity")
    det = _build(raw, base / "det", "--landmarks", "template", "--align", "detector")
    lmk = _build(raw, base / "lmk", "--landmarks", "file:landmarks", "--align", "landmarks")
    det_run = base / "run_det"
    run = Run.create(_config(det), det_run)
    try:
        run.save("latest", 0, run.train_iterator().get_state(), {"status": "running"})
    finally:
        run.close()
    lmk_run = base / "run_lmk"
    shutil.copytree(det_run, lmk_run)
    shutil.copy(lmk / "manifest.json", lmk_run / "manifest.json")
    (lmk_run / "config.json").write_text(_config(lmk).to_json_best_effort(indent=2, sort_keys=True))
    return {"detector": det_run, "landmarks": lmk_run}


@pytest.mark.parametrize("kind", ["detector", "landmarks"])
def test_predict_matches_evaluate(kind, runs, raw, tmp_path):
    from fer_jax.evaluate import evaluate
    from fer_jax.predict import Predictor

    workdir = runs[kind]
    m = evaluate(workdir, checkpoint="latest", out_dir=tmp_path)
    rows = [json.loads(ln) for ln in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == m["num_examples"] and all(r["id"] for r in rows)
    row = rows[0]
    predictor = Predictor(workdir, "latest")
    video = raw / "Clip" / "original" / f"{row['id']}.mp4"
    landmarks = raw / "landmarks" / f"{row['id']}.npy" if kind == "landmarks" else None
    probs = predictor.predict(video, landmarks=landmarks)
    assert list(probs) == list(row["probs"])
    np.testing.assert_allclose(list(probs.values()), list(row["probs"].values()), atol=1e-5)
    if kind == "landmarks":
        with pytest.raises(ValueError, match="--landmarks"):
            predictor.predict(video)
