"""Tests of fer_jax.losses: focal loss, weighted cross-entropy, class weights, config wiring."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from fer_jax import losses


def _batch(seed=0, b=6, k=7):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(b, k)).astype(np.float32) * 2
    labels = rng.integers(0, k, size=b).astype(np.int32)
    return jnp.asarray(logits), jnp.asarray(labels)


def _np_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_focal_gamma0_unit_weights_equals_cross_entropy():
    logits, labels = _batch()
    ref = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    got = losses.focal_loss(logits, labels, gamma=0.0, class_weights=np.ones(7), reduction="none")
    chex.assert_trees_all_close(got, ref, rtol=1e-5)
    chex.assert_trees_all_close(losses.focal_loss(logits, labels, gamma=0.0), ref.mean(), rtol=1e-5)


def test_focal_matches_numpy_reference_with_weights_and_smoothing():
    logits, labels = _batch(1)
    w = np.linspace(0.5, 2.0, 7)
    eps, gamma = 0.1, 2.0
    logp = _np_log_softmax(logits)
    k = logits.shape[1]
    expected = []
    for i, y in enumerate(np.asarray(labels)):
        q = np.full(k, eps / k)
        q[y] += 1 - eps
        p_y = np.exp(logp[i, y])
        expected.append(w[y] * (1 - p_y) ** gamma * -(q * logp[i]).sum())
    got = losses.focal_loss(
        logits, labels, gamma=gamma, class_weights=w, label_smoothing=eps, reduction="none"
    )
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
    np.testing.assert_allclose(
        float(
            losses.focal_loss(
                logits, labels, gamma=gamma, class_weights=w, label_smoothing=eps, reduction="sum"
            )
        ),
        np.sum(expected),
        rtol=1e-5,
    )


def test_focal_down_weights_easy_examples():
    # a confident correct prediction loses far more to the (1-p)^gamma factor than an uncertain one
    logits = jnp.array([[8.0, 0.0, 0.0], [0.2, 0.0, 0.0]])
    labels = jnp.array([0, 0])
    ce = losses.weighted_cross_entropy(logits, labels, reduction="none")
    fl = losses.focal_loss(logits, labels, gamma=2.0, reduction="none")
    ratio = fl / ce
    assert ratio[0] < 1e-5 and ratio[1] > 0.3


def test_weighted_cross_entropy_uses_true_class_weight():
    logits, labels = _batch(2)
    w = np.arange(1, 8, dtype=np.float32)
    ref = optax.softmax_cross_entropy_with_integer_labels(logits, labels) * w[np.asarray(labels)]
    got = losses.weighted_cross_entropy(logits, labels, class_weights=w, reduction="none")
    chex.assert_trees_all_close(got, ref, rtol=1e-5)


def test_label_smoothing_matches_optax_smoothed_targets():
    logits, labels = _batch(3)
    targets = optax.smooth_labels(jax.nn.one_hot(labels, 7), 0.2)
    ref = optax.softmax_cross_entropy(logits, targets)
    got = losses.weighted_cross_entropy(logits, labels, label_smoothing=0.2, reduction="none")
    chex.assert_trees_all_close(got, ref, rtol=1e-5)


def test_class_weights_formula_on_known_counts():
    counts = [90, 9, 0]
    # w_c = N / (K (n_c + s)), s = 1: 99/(3*91), 99/(3*10), 99/(3*1); then mean 1; then clip
    raw = np.array([99 / 273, 99 / 30, 99 / 3])
    norm = raw / raw.mean()
    got = losses.class_weights_from_counts(counts, smoothing=1.0, clip=None)
    np.testing.assert_allclose(got, norm, rtol=1e-6)
    clipped = losses.class_weights_from_counts(counts, smoothing=1.0)
    np.testing.assert_allclose(clipped, np.clip(norm, 0.1, 10.0), rtol=1e-6)
    assert clipped.dtype == np.float32
    # equal counts -> all ones
    np.testing.assert_allclose(losses.class_weights_from_counts([5, 5, 5, 5]), np.ones(4), rtol=1e-6)


def test_dfew_weights_rank_rare_classes_highest():
    w = losses.class_weights_from_counts([2445, 1894, 2669, 2173, 1469, 145, 902])
    assert np.argmax(w) == 5 and np.argmin(w) == 2  # Disgust highest, Neutral lowest
    assert np.all((w >= 0.1) & (w <= 10.0))
    # the numbers the docstring quotes (normalised to mean 1 before the clip: Disgust 4.6, not 10)
    np.testing.assert_allclose(w, [0.275, 0.355, 0.252, 0.309, 0.458, 4.607, 0.745], atol=1e-3)


def test_manifest_stores_counts_not_weights():
    from fer_jax.data import manifest

    assert not hasattr(manifest, "class_weights")  # one formula: this module's


@pytest.mark.parametrize(
    "counts,kwargs",
    [([], {}), ([3, -1], {}), ([0, 4], {"smoothing": 0.0}), ([0, 0], {}), ([1, 2], {"clip": (2.0, 1.0)})],
)
def test_class_weights_reject_bad_input(counts, kwargs):
    with pytest.raises(ValueError):
        losses.class_weights_from_counts(counts, **kwargs)


def test_bad_shapes_and_options_raise():
    logits, labels = _batch()
    with pytest.raises(ValueError):
        losses.focal_loss(logits, labels[:3])
    with pytest.raises(ValueError):
        losses.focal_loss(logits, labels, reduction="avg")
    with pytest.raises(ValueError):
        losses.focal_loss(logits, labels, class_weights=np.ones(3))
    with pytest.raises(ValueError):
        losses.focal_loss(logits, labels, label_smoothing=1.0)


def _cfg(name="focal", weights="inverse_freq"):
    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict({"num_classes": 3})
    c.loss = ml_collections.ConfigDict(
        {"name": name, "gamma": 2.0, "class_weights": weights, "label_smoothing": 0.0}
    )
    return c


def test_loss_from_config_per_example_and_sample_weights():
    counts = [10, 20, 70]
    logits, labels = _batch(4, b=5, k=3)
    fn = losses.loss_from_config(_cfg(), counts)
    w = losses.class_weights_from_counts(counts)
    ref = losses.focal_loss(logits, labels, gamma=2.0, class_weights=w, reduction="none")
    out = jax.jit(fn)(logits, labels)
    chex.assert_shape(out, (5,))
    chex.assert_trees_all_close(out, ref, rtol=1e-6)
    sw = jnp.arange(5.0)
    chex.assert_trees_all_close(fn(logits, labels, sw), ref * sw, rtol=1e-6)
    ce = losses.loss_from_config(_cfg("ce", "none"), None)(logits, labels)
    chex.assert_trees_all_close(
        ce, optax.softmax_cross_entropy_with_integer_labels(logits, labels), rtol=1e-5
    )


def test_loss_from_config_errors():
    with pytest.raises(ValueError):
        losses.loss_from_config(_cfg(), None)
    with pytest.raises(ValueError):
        losses.loss_from_config(_cfg(name="dice"), [1, 2, 3])
    with pytest.raises(ValueError):
        losses.loss_from_config(_cfg(), [1, 2, 3, 4])


def _au_clips(b=5, t=4):
    """``(b, t, 68, 2)`` template clips; clip i raises its lip corners by 0.01 * i from frame 1 on (clip 0
    does not move: the most subtle)."""
    from fer_jax.data.constants import TEMPLATE_68

    clips = np.repeat(np.repeat(np.asarray(TEMPLATE_68, np.float32)[None, None], t, 1), b, 0).copy()
    for i in range(b):
        clips[i, 1:, [48, 54], 1] -= 0.01 * i
    return jnp.asarray(clips)


def test_au_reweight_zero_is_exactly_off():
    logits, labels = _batch(4, b=5, k=3)
    c = _cfg()
    base = losses.loss_from_config(c, [10, 20, 70])
    c.loss.au_reweight = 0.0
    off = losses.loss_from_config(c, [10, 20, 70])
    assert not getattr(off, "uses_landmarks", False)  # the train step passes no landmarks: the same graph
    np.testing.assert_array_equal(np.asarray(jax.jit(off)(logits, labels)), np.asarray(base(logits, labels)))


def test_au_reweight_changes_loss_and_gradients_by_the_documented_weights():
    from fer_jax.interpret import au

    logits, labels = _batch(4, b=5, k=3)
    lms = _au_clips()
    c = _cfg()
    off = losses.loss_from_config(c, [10, 20, 70])
    c.loss.au_reweight = 1.5
    on = losses.loss_from_config(c, [10, 20, 70])
    assert on.uses_landmarks
    got = jax.jit(lambda lg, lb, lm: on(lg, lb, landmarks=lm))(logits, labels, lms)
    # the weights by hand: activity = largest |AU score| = the AU12 lift in inter-ocular distances
    activity = np.asarray(au.au_activity(np.asarray(lms, np.float64)))
    assert activity[0] == 0 and np.all(np.diff(activity) > 0)
    w = 1 + 1.5 * (1 - np.tanh(activity / 0.05))
    assert w[0] == pytest.approx(2.5) and w[-1] < 1.2
    np.testing.assert_allclose(np.asarray(got), np.asarray(off(logits, labels)) * w, rtol=1e-5)
    g_on = jax.grad(lambda lg: on(lg, labels, landmarks=lms).mean())(logits)
    g_off = jax.grad(lambda lg: off(lg, labels).mean())(logits)
    np.testing.assert_allclose(np.asarray(g_on), np.asarray(g_off) * w[:, None], rtol=1e-5, atol=1e-7)
    assert not np.allclose(np.asarray(g_on), np.asarray(g_off))
    # numpy and jax weights agree; sample weights multiply on top
    np.testing.assert_allclose(au.au_sample_weights(np.asarray(lms), 1.5), w, rtol=1e-5)
    sw = jnp.arange(5.0)
    np.testing.assert_allclose(
        np.asarray(on(logits, labels, sw, landmarks=lms)), np.asarray(got) * np.asarray(sw), rtol=1e-6
    )


def test_au_reweight_errors_and_missing_landmarks():
    logits, labels = _batch(4, b=2, k=3)
    c = _cfg()
    c.loss.au_reweight = -1.0
    with pytest.raises(ValueError, match="au_reweight"):
        losses.loss_from_config(c, [10, 20, 70])
    c.loss.au_reweight = 1.0
    fn = losses.loss_from_config(c, [10, 20, 70])
    with pytest.raises(ValueError, match="landmarks"):
        fn(logits, labels)
    # frames without landmarks (all zero) count as no movement, never as NaN
    out = fn(logits, labels, landmarks=jnp.zeros((2, 3, 68, 2)))
    assert np.all(np.isfinite(np.asarray(out)))


def test_train_step_feeds_the_batch_landmarks_to_the_au_reweighted_loss():
    """The jitted train step with loss.au_reweight > 0: task loss = the hand-weighted per-clip loss."""
    import optax as _optax
    from flax import nnx

    from fer_jax.training import steps
    from fer_jax.training.state import split_model

    class Toy(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.eye(3))

        def __call__(self, frames, landmarks):
            return {"logits": frames.mean(axis=(1, 2, 3)) @ self.w[...]}

    model = Toy()
    defs, params, rest = split_model(model)
    c = _cfg()
    c.loss.au_reweight = 1.0
    fn = losses.loss_from_config(c, [10, 20, 70])
    tx = _optax.sgd(0.0)
    step = jax.jit(steps.make_train_step(defs, tx, lambda s: 0.0, fn, ("frames", "landmarks")))
    frames = jnp.asarray(np.random.default_rng(0).normal(size=(5, 2, 2, 2, 3)), jnp.float32)
    lms = _au_clips(t=2)
    labels = jnp.asarray([0, 1, 2, 0, 1], jnp.int32)
    state = {"step": 0, "params": params, "rest": rest, "opt_state": tx.init(params), "ema": None}
    _, metrics = step(state, {"frames": frames, "landmarks": lms, "label": labels})
    logits = frames.mean(axis=(1, 2, 3))
    want = float(jnp.mean(fn(logits, labels, landmarks=lms)))
    assert float(metrics["task_loss"]) == pytest.approx(want, rel=1e-5)
    c.loss.au_reweight = 0.0
    plain = float(jnp.mean(losses.loss_from_config(c, [10, 20, 70])(logits, labels)))
    assert abs(want - plain) > 1e-3
