"""The input side of the loop: the device prefetch (consumed position saved, exact resume), the
evaluation loader built once and reused, the per-interval step time and data wait, the profiler trace,
the persistent compilation cache and the checkpoint interval's independence from evaluations."""

from __future__ import annotations

import sys
from pathlib import Path

import grain
import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import test_train_support as support  # noqa: E402

from configs import demo_dfew, demo_see, dfew, dsee, see, see_reference  # noqa: E402
from configs.common import base_config  # noqa: E402
from fer_jax.data import pipeline  # noqa: E402
from fer_jax.training import loop, profiling  # noqa: E402
from fer_jax.training import run as run_lib  # noqa: E402
from fer_jax.training.logging import read_metrics  # noqa: E402
from fer_jax.training.prefetch import DevicePrefetch  # noqa: E402


def _host_iterator(n: int = 50):
    ds = grain.MapDataset.range(n).seed(3).shuffle().repeat().batch(4)
    return ds.to_iter_dataset().__iter__()


def _first(batches) -> list[int]:
    return [int(np.asarray(b)[0]) for b in batches]


@pytest.mark.parametrize("size", [0, 1, 2])
def test_prefetch_saves_the_consumed_position_and_resumes_exactly(size):
    straight = DevicePrefetch(_host_iterator(), jax.device_put, size)
    expected = _first(next(straight) for _ in range(9))
    it = DevicePrefetch(_host_iterator(), jax.device_put, size)
    first = _first(next(it) for _ in range(4))
    state = it.get_state()  # after 4 consumed batches, with `size` more already drawn
    resumed = DevicePrefetch(_host_iterator(), jax.device_put, size)
    resumed.set_state(state)
    assert first + _first(next(resumed) for _ in range(5)) == expected
    # set_state drops what was drawn ahead: the same iterator continues from the saved position too
    it.set_state(state)
    assert _first(next(it) for _ in range(5)) == expected[4:]


def test_prefetch_puts_batches_ahead_and_counts_the_wait():
    put = []
    it = DevicePrefetch(_host_iterator(), lambda b: put.append(b) or jax.device_put(b), 2)
    batch = next(it)
    assert isinstance(batch, jax.Array) and len(put) == 3  # the one consumed + two on the device
    next(it)
    assert len(put) == 4 and it.wait_s > 0
    with pytest.raises(ValueError, match="prefetch size"):
        DevicePrefetch(_host_iterator(), jax.device_put, -1)


def test_evaluation_loader_reuses_one_iterator_and_repeats_its_batches(see_shards):
    c = base_config()
    c.data.dataset, c.data.dir, c.data.num_frames, c.data.image_size = "see", str(see_shards), 2, 64
    loader = pipeline.make_eval_iterator(c, "test", batch_size=4)  # 7 examples: 2 batches, 1 padded row
    first, second = list(loader), list(loader)
    assert len(first) == len(second) == loader.num_batches == 2
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert loader.iterators_started == 1  # one grain iterator (one set of workers) for both passes
    next(iter(loader))  # a pass left unfinished ...
    third = list(loader)  # ... the next one starts again at the split's beginning
    np.testing.assert_array_equal(third[0]["index"], first[0]["index"])
    assert loader.iterators_started == 2
    # random temporal sampling keeps one fresh iterator per pass (a seed always gives the same draws)
    aug = pipeline.make_eval_iterator(c, "test", batch_size=4, augment=True, seed=1)
    np.testing.assert_array_equal(next(iter(aug))["rgb"], next(iter(aug))["rgb"])


class _ReiterableData(support.ToyData):
    """ToyData whose evaluation loaders may be iterated again (as the pipeline's); counts constructions."""

    def __init__(self):
        super().__init__()
        self.eval_loaders_built = 0

    def eval_iterator(self, config, split, *, batch_size, process_index, process_count, seed, augment):
        self.eval_loaders_built += 1
        return support._Finite(self.test[process_index::process_count], batch_size // process_count)


def test_a_run_builds_its_evaluation_loader_once(tmp_path):
    data = _ReiterableData()
    run = run_lib.Run.create(support.tiny_config(), tmp_path, data=data)
    try:
        m1, out1 = run.evaluate("test")
        m2, out2 = run.evaluate("test")
        assert data.eval_loaders_built == 1
        assert m1 == m2
        np.testing.assert_array_equal(out1["probs"], out2["probs"])
        run.evaluate("test", batch_size=4)  # another batch size: another loader
        assert data.eval_loaders_built == 2
    finally:
        run.close()
    # a one-shot iterator (support.ToyData's) is rebuilt for each evaluation
    toy = support.ToyData()
    calls = []
    orig = toy.eval_iterator
    toy.eval_iterator = lambda *a, **k: calls.append(1) or orig(*a, **k)
    run = run_lib.Run.create(support.tiny_config(), tmp_path / "b", data=toy)
    try:
        assert run.evaluate("test")[0] == run.evaluate("test")[0] and len(calls) == 2
    finally:
        run.close()


@pytest.fixture
def restore_compilation_cache():
    """The run below turns the persistent cache on: put JAX's settings back afterwards."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    old = {n: getattr(jax.config, n) for n in names}
    jax.config.update(names[1], 0.0)  # the tiny steps compile in well under JAX's 1 s threshold
    yield
    for n, v in old.items():
        jax.config.update(n, v)
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()


def test_profile_trace_timings_and_compilation_cache(tmp_path, restore_compilation_cache):
    cache = tmp_path / "xla_cache"
    config = support.tiny_config(profile_steps="2", compilation_cache_dir=str(cache), num_steps=6)
    summary = loop.train(config, tmp_path / "run", data=support.ToyData(), progress=False)
    assert summary["status"] == "finished"
    traces = list((tmp_path / "run" / "profile").rglob("*.xplane.pb"))
    assert traces, "no profiler trace written"
    assert any(cache.iterdir()), "the compilation cache stayed empty"
    rows = [r for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert [r["step"] for r in rows] == [2, 4, 6]
    for r in rows:
        assert r["step_time_s"] > 0 and 0 <= r["data_wait_s"] <= r["step_time_s"]


@pytest.mark.parametrize(
    "spec, start, steps",
    [("", 0, None), ("0", 0, None), ("3", 0, (2, 4)), ("3", 10, (12, 14)), ("5,8", 10, (5, 8))],
)
def test_profile_steps_parse(spec, start, steps):
    assert profiling.parse_profile_steps(spec, start) == steps


@pytest.mark.parametrize("spec", ["x", "8,5", "0,3", "1,2,3", "-2"])
def test_bad_profile_steps_are_one_line(spec):
    with pytest.raises(ValueError, match="train.profile_steps") as e:
        profiling.parse_profile_steps(spec)
    assert "\n" not in str(e.value)


def test_checkpoint_interval_is_independent_of_evaluations():
    c = base_config()
    c.train.batch_size, c.train.num_steps, c.train.eval_every_steps = 8, 100, 10
    c.train.checkpoint_every_steps = 25
    lengths = run_lib.run_lengths(c, 80)
    assert (lengths["eval_every"], lengths["checkpoint_every"]) == (10, 25)
    c.train.checkpoint_every_steps = 0  # 0: at each evaluation
    assert run_lib.run_lengths(c, 80)["checkpoint_every"] == 10

    # the paper configs' defaults: DFEW (1,169 steps per epoch) saves twice per epoch, SEE and its
    # children (25 steps per epoch) every 40 epochs; both evaluate once per epoch
    def lengths_of(mod, num_train):
        return run_lib.run_lengths(mod.get_config(), num_train)

    assert lengths_of(dfew, 9356)["checkpoint_every"] * 2 < lengths_of(dfew, 9356)["eval_every"]
    for mod in (see, dsee, see_reference):
        got = lengths_of(mod, 1638)
        assert got["checkpoint_every"] == 40 * got["eval_every"] == 1000, mod.__name__
    # the demo configs still save only at their last step (their single evaluation)
    for mod in (demo_dfew, demo_see):
        dc = mod.get_config()
        assert int(dc.train.checkpoint_every_steps) >= int(dc.train.num_steps), mod.__name__


@pytest.mark.parametrize("value", [-1, -3])
def test_bad_prefetch_size_is_refused_in_one_line(value):
    from fer_jax.training.validate import check_config

    c = support.tiny_config(prefetch_batches=value)
    with pytest.raises(ValueError, match="train.prefetch_batches") as e:
        check_config(c)
    assert "\n" not in str(e.value)
