"""The Run object (fer_jax.training.run) on the tiny registered model and in-memory data: dataset facts
read once, num_classes from the manifest, deterministic jitted init, pretrained loading on fresh starts
only, and evaluate's predictions.jsonl (probabilities averaged over passes). About 30 s on 2 cores."""

import json
import sys
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import test_train_support as support  # noqa: E402

from fer_jax.data.info import DataInfo  # noqa: E402
from fer_jax.training import run as run_lib  # noqa: E402
from fer_jax.training.run import Run  # noqa: E402


class CountingData(support.ToyData):
    """ToyData that counts manifest reads."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.manifest_calls = 0

    def manifest(self, config):
        self.manifest_calls += 1
        return super().manifest(config)


def test_data_info_from_manifest():
    info = DataInfo.from_manifest(
        {
            "dataset": "see",
            "class_names": ["a", "b"],
            "class_counts": {"train": [3, 4], "test": [1, 1]},
            "lighting_names": ["normal", "low"],
            "preprocessing": {"size": 64, "frames": 8, "encoding": "jpeg"},
        }
    )
    assert info.num_classes == 2 and info.class_names == ("a", "b")
    assert dict(info.num_examples) == {"train": 7, "test": 2}  # from the counts when not listed
    assert info.image_size == 64 and info.stored_frames == 8 and info.lighting_names == ("normal", "low")
    assert info.class_counts_of("train") == [3, 4] and info.class_counts_of("val") is None
    with pytest.raises(ValueError, match="class_names"):
        DataInfo.from_manifest({"dataset": "dfew"})


def test_num_classes_mismatch_is_one_line(tmp_path):
    cfg = support.tiny_config()
    cfg.model.num_classes = 5
    with pytest.raises(ValueError) as info:
        Run.create(cfg, tmp_path, data=support.ToyData())
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and "5" in msg and "3 classes" in msg


def test_create_reads_the_manifest_once_and_init_is_deterministic(tmp_path):
    data = CountingData()
    run = Run.create(support.tiny_config(), tmp_path / "a", data=data)
    try:
        assert data.manifest_calls == 1
        assert run.config.model.num_classes == 3 and run.lengths["total_steps"] == 8
        assert json.loads((tmp_path / "a" / "manifest.json").read_text())["class_names"] == ["a", "b", "c"]
        again = Run.create(support.tiny_config(), tmp_path / "b", data=support.ToyData())
        again.close()
        keyless = lambda s: jax.tree.map(  # noqa: E731
            lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x, s
        )
        chex.assert_trees_all_equal(keyless(run.state), keyless(again.state))
        # the abstract target (restore) has exactly the concrete state's structure, shapes and dtypes
        _, abstract, _, _ = run_lib.build_model_and_state(
            run.config, run.mesh, total_updates=1, updates_per_epoch=1, abstract=True
        )
        assert jax.tree.structure(abstract) == jax.tree.structure(run.state)
        spec = lambda t: [(x.shape, x.dtype) for x in jax.tree.leaves(t)]  # noqa: E731
        assert spec(abstract) == spec(run.state)
    finally:
        run.close()


def test_pretrained_targets_load_on_fresh_start_only(tmp_path, monkeypatch):
    """Run.create asks registry.pretrained_targets(model, config) and loads each (module, directory)
    through fer_jax.convert.load_backbone_into; a resumed run does not."""
    import fer_jax.convert
    from fer_jax.models import registry

    calls = []

    def targets(model, config):
        return [(model.fc1, str(tmp_path / "weights"))]

    def load(module, directory):
        calls.append(directory)
        module.kernel.set_value(np.full(module.kernel.get_value().shape, 0.5, np.float32))
        return module

    monkeypatch.setattr(registry, "pretrained_targets", targets, raising=False)
    monkeypatch.setattr(fer_jax.convert, "load_backbone_into", load)
    run = Run.create(support.tiny_config(), tmp_path / "run", data=support.ToyData())
    try:
        assert calls == [str(tmp_path / "weights")] and run.pretrained == calls
        kernel = np.asarray(run.state["params"]["fc1"]["kernel"].get_value())
        assert np.all(kernel == 0.5)
        assert np.all(
            np.asarray(run.state["ema"]["fc1"]["kernel"].get_value()) == 0.5
        )  # EMA starts from them
        run.save("latest", 0, run.train_iterator().get_state(), {"early_stopping": {}, "status": "running"})
    finally:
        run.close()
    resumed = Run.create(support.tiny_config(), tmp_path / "run", data=support.ToyData())
    resumed.close()
    assert calls == [str(tmp_path / "weights")] and resumed.resumed is not None


def test_evaluate_writes_predictions_averaged_over_passes(tmp_path):
    from fer_jax.evaluate import evaluate
    from fer_jax.training.loop import train

    cfg = support.tiny_config(num_steps=2, eval_every_steps=2)
    assert train(cfg, tmp_path / "run", data=support.ToyData(), progress=False)["status"] == "finished"
    run = Run.restore(tmp_path / "run", "latest", data=support.ToyData())
    passes = [run.evaluate("test", 1, augment=True)[1] for _ in range(2)]
    m = evaluate(
        tmp_path / "run", checkpoint="latest", passes=2, data=support.ToyData(), out_dir=tmp_path / "e"
    )
    rows = [json.loads(ln) for ln in (tmp_path / "e" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == m["num_examples"] == 13
    assert [r["id"] for r in rows] == [str(i) for i in range(13)]  # no record ids: split positions
    assert {r["lighting"] for r in rows} == {"normal", "low"} and rows[0]["label"] in ("a", "b", "c")
    got = np.array([[r["probs"][c] for c in ("a", "b", "c")] for r in rows])
    want = np.mean([p["probs"][np.argsort(p["index"])] for p in passes], axis=0)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert [r["pred"] for r in rows] == [("a", "b", "c")[i] for i in want.argmax(-1)]
