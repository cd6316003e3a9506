"""Shared pytest set-up: absl flags parsed (grain workers read them) and a quiet, deterministic JAX."""

import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402

# grain worker processes read absl flags; mark them parsed before any pipeline starts
if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


# ---------------------------------------------------------------------------------------------------------
# Tiny synthetic datasets and their shards (session-scoped: built once, shared by every test file).
# dfew_shards: 14 clips (fold 1: 11 train / 3 test), T = 8 frames of 64x64, landmarks from the files.
# see_shards: 35 sequences (28 train / 7 test), K = 8 stored frames of 64x64, JPEG event frames.
# Test configs use data.image_size = 64 (the pipeline checks it against the manifest).
# ---------------------------------------------------------------------------------------------------------
import pytest  # noqa: E402

TINY_MAX_FRAMES = 12  # clips and sequences are cut to this length: the build cost scales with it


@pytest.fixture(scope="session")
def dfew_raw(tmp_path_factory):
    """A tiny synthetic DFEW folder in the real layout (Clip/clip_224x224, EmoLabel_DataSplit, landmarks)."""
    from data_prep.synth import dfew

    out = tmp_path_factory.mktemp("dfew_raw")
    plan = dfew.plan_clips(14, seed=0)
    for it in plan:
        it["num_frames"] = min(it["num_frames"], TINY_MAX_FRAMES)
        dfew.write_clip(out, it)
    dfew.write_splits(out, plan)
    dfew.write_meta(out, plan, {"kind": "dfew", "clips": len(plan), "seed": 0, "tiny": True})
    return out


@pytest.fixture(scope="session")
def dfew_shards(dfew_raw, tmp_path_factory):
    """``dfew_raw`` built by ``data_prep.build`` (fold 1, T=8, S=64, landmark files): a ``data.dir``."""
    from data_prep import build

    out = tmp_path_factory.mktemp("dfew_shards") / "shards"
    rc = build.main(
        ["--dataset", "dfew", "--root", str(dfew_raw), "--out", str(out), "--frames", "8", "--size", "64",
         "--workers", "1", "--landmarks", "file:landmarks", "--quiet"]
    )  # fmt: skip
    assert rc == 0, "building the dfew fixture failed"
    return out


@pytest.fixture(scope="session")
def see_raw(tmp_path_factory):
    """A tiny synthetic SEE folder (frame/, event/, raw_events/, emotion.json)."""
    from data_prep.synth import see

    out = tmp_path_factory.mktemp("see_raw")
    plan = see.plan_sequences(35, seed=0)
    for it in plan:
        it["num_frames"] = min(it["num_frames"], TINY_MAX_FRAMES)
    counts = [see.write_sequence(out, it) for it in plan]
    see.write_index(out, plan, {"kind": "see", "clips": len(plan), "seed": 0, "tiny": True}, counts)
    return out


@pytest.fixture(scope="session")
def see_shards(see_raw, tmp_path_factory):
    """``see_raw`` built by ``data_prep.build`` (K=8 stored frames, S=64, JPEG event frames)."""
    from data_prep import build

    out = tmp_path_factory.mktemp("see_shards") / "shards"
    rc = build.main(
        ["--dataset", "see", "--root", str(see_raw), "--out", str(out), "--frames", "8", "--size", "64",
         "--workers", "1", "--quiet"]
    )  # fmt: skip
    assert rc == 0, "building the see fixture failed"
    return out


@pytest.fixture(scope="module")
def module_compile_cache(tmp_path_factory):
    """A persistent XLA cache for one test module: each train() call jits its steps afresh, and the later
    runs of the module reuse the executables of the first (restored afterwards, so other modules are
    unaffected). Use with ``pytestmark = pytest.mark.usefixtures("module_compile_cache")``."""
    import jax

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")  # fmt: skip
    old = {n: getattr(jax.config, n) for n in names}
    jax.config.update(names[0], str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update(names[1], 0.0)
    jax.config.update(names[2], 0)
    yield
    for n, v in old.items():
        jax.config.update(n, v)
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()  # the next module starts without this module's cache


# Fast compiles (tests/compile_support.py): tiny models, a few steps, so compiling is most of the cost.
@contextlib.contextmanager
def _most_optimizations_disabled():
    """JAX's own switch (jax_disable_most_optimizations): every compile in this process, nested jits and
    other modules' included, at LLVM -O0 without its expensive passes (= FAST_COMPILE). Afterwards the
    in-memory caches are cleared, so no -O0 executable of a module-level jitted function serves a later
    test; the persistent cache's keys include the setting."""
    import jax

    old = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", old)
        jax.clear_caches()


@pytest.fixture
def fast_compile():
    """Everything the test compiles, at ``FAST_COMPILE`` (tests/compile_support.py says which tests may).
    Subprocesses: put ``FAST_COMPILE_ENV`` in their environment."""
    with _most_optimizations_disabled():
        yield


@pytest.fixture(scope="module")
def module_fast_compile():
    """``fast_compile`` for a whole module, its module-scoped fixtures included (list it first)."""
    with _most_optimizations_disabled():
        yield


# The longest test files first: with `pytest -n 2 --dist loadfile` (CI) a long file that starts last
# runs alone at the end. Measured on 2 cores (s): notebooks 300, mambafer 90, predict parity 120,
# train_smoke 70, model_config 60, baselines 45, efficientnet_v2 60, train_distributed 70, multihost 175-255
# (loaded machine).
_LONG_FIRST = ("test_notebooks.py", "test_multihost.py", "test_predict_parity.py", "test_mambafer.py",
               "test_train_distributed.py", "test_train_smoke.py", "test_efficientnet_v2.py",
               "test_model_config.py", "test_baselines.py")  # fmt: skip


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file kept
