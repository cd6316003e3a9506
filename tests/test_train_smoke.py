"""Smoke test per demo / paper model config: a few steps on the tiny generated shards, then evaluate.
(The kauldron / maxtext pattern: load the real config, shrink it, train on generated data.)"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import test_train_support as support

ROOT = Path(__file__).resolve().parents[1]

# config module -> the conftest fixture holding shards of its dataset. demo_dfew and demo_see run end to
# end (train, evaluate, interpret) at their own sizes in tests/test_notebooks.py (the quickstart): not
# repeated here, which saves about 4 minutes of CI
CONFIGS = {
    "demo_see_rgb": "see_shards",
}


def _load(name: str):
    path = ROOT / "configs" / f"{name}.py"
    if not path.exists():
        pytest.skip(f"configs/{name}.py not written yet")
    spec = importlib.util.spec_from_file_location(f"configs.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
# -O0 (ranges and counts asserted only); evaluate reuses the run's compiled evaluation step from the cache
@pytest.mark.usefixtures("module_compile_cache", "fast_compile")
def test_demo_config_trains_and_evaluates(name, request, tmp_path):
    from fer_jax.evaluate import evaluate
    from fer_jax.training.loop import train

    # the fixtures hold 8 frames of 64 px: the demo's geometry shrunk to them (the demo's own sizes are
    # checked against real demo shards by scripts/demo.py's run, not here)
    config = support.shrink_to_fixture_shards(_load(name), request.getfixturevalue(CONFIGS[name]), steps=2)
    summary = train(config, tmp_path, progress=False)
    assert summary["status"] == "finished" and summary["step"] == 2
    assert np.isfinite(summary["last_eval"]["uar"])
    m = evaluate(tmp_path, checkpoint="best", out_dir=tmp_path / "eval")
    assert 0.0 <= m["war"] <= 1.0 and 0.0 <= m["uar"] <= 1.0
    assert m["num_examples"] > 0 and int(np.sum(m["confusion"])) == m["num_examples"]
    assert set(m["per_class"]) == set(summary["last_eval"]["per_class"])
    assert (tmp_path / "eval" / "metrics.json").exists()
    if config.model.name == "mco_e_net" and config.model.get("head", "moe") == "moe":
        from fer_jax.interpret.report import interpret

        res = interpret(tmp_path, clips=[0], checkpoint="latest", out_dir=tmp_path / "interp")
        assert res["expert_usage"] is not None, res["notes"]
        assert (tmp_path / "interp" / "expert_usage.png").exists()
    if config.model.name == "mambafer":
        import json

        from fer_jax.interpret.report import interpret

        res = interpret(tmp_path, clips=[0, 1], checkpoint="latest", out_dir=tmp_path / "interp")
        out = tmp_path / "interp"
        for f in ("gradcam_0.png", "gradcam_1.png", "au_0.png", "au_by_class.png", "au.json"):
            assert (out / f).exists(), (f, res["notes"])
        saved = json.loads((out / "au.json").read_text())
        assert set(saved["clips"]) == {"0", "1"} and "AU12" in saved["clips"]["0"]["au"]
        assert set(res["au_by_class"]) <= set(summary["last_eval"]["per_class"])
