"""Classification losses of paper 1: class-balanced focal loss and weighted cross-entropy.

- :func:`class_weights_from_counts`: smoothed inverse-frequency class weights from the training split's
  per-class counts, normalised to mean 1 and clipped to [0.1, 10] (paper 1, Section 3).
- :func:`focal_loss`: ``w_y (1 - p_y)^gamma CE`` with optional label smoothing.
- :func:`weighted_cross_entropy`: ``w_y CE`` (the focal loss with gamma 0).
- :func:`loss_from_config`: the per-example loss that ``config.loss`` describes, with the optional
  AU re-weighting (``loss.au_reweight``, below).

AU re-weighting (paper 1 computes AU scores "for interpretability and re-weighting" and names no rule; this
is our choice): each clip's loss is multiplied by ``1 + s * (1 - tanh(a / 0.05))``, where ``a`` is its
largest AU movement over frames and AUs (``fer_jax.interpret.au.au_activity``, inter-ocular distances
relative to the first frame) and ``s = loss.au_reweight``. Clips whose face barely moves - the subtle
expressions the paper finds confused (Disgust, Fear) - weigh up to ``1 + s``; clearly moving ones about 1.
The weights are computed from the batch's landmarks inside the jitted step and carry no gradient (landmarks
are data). At ``s = 0`` the loss never reads the landmarks: bit-identical to the loss without the option.
With template landmarks every clip has ``a = 0``, so the option only scales the loss by ``1 + s``.

Shapes: logits ``(B, K)`` float, labels ``(B,)`` int in ``[0, K)``; per-example losses ``(B,)`` float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

_REDUCTIONS = ("mean", "sum", "none")


def class_weights_from_counts(
    counts: Sequence[int] | np.ndarray,
    *,
    smoothing: float = 1.0,
    clip: tuple[float, float] | None = (0.1, 10.0),
) -> np.ndarray:
    """Smoothed inverse-frequency class weights.

    ``w_c = N / (K (n_c + s))`` with ``N = sum n_c`` and ``s = smoothing`` (additive smoothing keeps an empty
    class finite), then normalised to mean 1 so the loss scale does not depend on the dataset size, then
    clipped to ``clip`` (paper 1: [0.1, 10]) so a near-empty class cannot dominate the gradient. On DFEW
    fold 1 (2445/1894/2669/2173/1469/145/902) this gives 0.275/0.355/0.252/0.309/0.458/4.607/0.745
    (Disgust 4.6, Neutral 0.25); without the mean normalisation Disgust would be 11.4, clipped to 10.
    The one class-weight formula of the project: manifests store only the counts.

    Returns a float32 array ``(K,)``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D sequence, got shape {counts.shape}")
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ValueError(f"counts must be finite and non-negative, got {counts.tolist()}")
    if smoothing <= 0 and np.any(counts == 0):
        raise ValueError("a class has no examples: use smoothing > 0")
    if counts.sum() == 0:
        raise ValueError("all class counts are zero")
    k = counts.size
    w = counts.sum() / (k * (counts + smoothing))
    w = w / w.mean()
    if clip is not None:
        lo, hi = clip
        if not 0 <= lo <= hi:
            raise ValueError(f"clip must satisfy 0 <= lo <= hi, got {clip}")
        w = np.clip(w, lo, hi)
    return w.astype(np.float32)


def _check(logits: jax.Array, labels: jax.Array, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (B, K) and labels (B,), got {logits.shape} and {labels.shape}")


def _reduce(per_example: jax.Array, reduction: str) -> jax.Array:
    if reduction == "mean":
        # plain batch mean (not divided by the sum of weights): the weights already have mean 1
        return jnp.mean(per_example)
    if reduction == "sum":
        return jnp.sum(per_example)
    return per_example


def focal_loss(
    logits: jax.Array,
    labels: jax.Array,
    *,
    gamma: float = 2.0,
    class_weights: jax.Array | np.ndarray | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> jax.Array:
    """Multi-class focal loss ``w_y (1 - p_y)^gamma sum_c q_c (-log p_c)``.

    ``q`` is the (optionally smoothed) target, ``q = (1 - eps) onehot(y) + eps / K``; the modulating factor
    uses the probability of the true class ``p_y``, and the class weight is that of the true class. With
    ``gamma = 0`` this is :func:`weighted_cross_entropy`. Computed in float32.

    logits ``(B, K)``, labels ``(B,)`` int -> ``(B,)`` for ``reduction="none"``, else a scalar.
    """
    _check(logits, labels, reduction)
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    logits = logits.astype(jnp.float32)
    num_classes = logits.shape[-1]
    logp = jax.nn.log_softmax(logits, axis=-1)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    target = (1.0 - label_smoothing) * onehot + label_smoothing / num_classes
    ce = -jnp.sum(target * logp, axis=-1)
    if gamma > 0:
        p_true = jnp.exp(jnp.sum(onehot * logp, axis=-1))
        # (1 - p)^gamma with the base clamped at 0: p can round to slightly above 1
        ce = jnp.maximum(1.0 - p_true, 0.0) ** gamma * ce
    if class_weights is not None:
        w = jnp.asarray(class_weights, jnp.float32)
        if w.shape != (num_classes,):
            raise ValueError(f"class_weights must have shape ({num_classes},), got {w.shape}")
        ce = ce * w[labels]
    return _reduce(ce, reduction)


def weighted_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    class_weights: jax.Array | np.ndarray | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> jax.Array:
    """Cross-entropy weighted by the true class's weight, ``w_y sum_c q_c (-log p_c)``; see :func:`focal_loss`."""
    return focal_loss(
        logits,
        labels,
        gamma=0.0,
        class_weights=class_weights,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )


def loss_from_config(config, class_counts: Sequence[int] | np.ndarray | None) -> Callable[..., jax.Array]:
    """The per-example loss described by ``config.loss`` (``name``, ``gamma``, ``class_weights``,
    ``label_smoothing``, ``au_reweight``).

    ``class_counts``: the training split's per-class counts (``manifest["class_counts"]["train"]``); needed
    when ``config.loss.class_weights == "inverse_freq"``. Returns ``fn(logits, labels, sample_weights=None)
    -> (B,)`` per-example losses; ``sample_weights`` ``(B,)`` multiplies them. With ``au_reweight > 0`` the
    function takes ``landmarks=(B, T, 68, 2)`` too (the AU re-weighting of the module docstring) and has
    ``uses_landmarks = True``, which tells the train step to pass the batch's landmarks.
    """
    loss_cfg = config.loss
    name = loss_cfg.get("name", "focal")
    if name not in ("focal", "ce"):
        raise ValueError(f"config.loss.name must be 'focal' or 'ce', got {name!r}")
    mode = loss_cfg.get("class_weights", "none") or "none"
    if mode == "inverse_freq":
        if class_counts is None:
            raise ValueError(
                "config.loss.class_weights='inverse_freq' needs the training split's class counts"
            )
        weights = jnp.asarray(class_weights_from_counts(class_counts))
        if weights.shape[0] != config.model.num_classes:
            raise ValueError(
                f"{weights.shape[0]} class counts for a model with {config.model.num_classes} classes"
            )
    elif mode == "none":
        weights = None
    else:
        raise ValueError(f"config.loss.class_weights must be 'inverse_freq' or 'none', got {mode!r}")
    gamma = float(loss_cfg.get("gamma", 2.0)) if name == "focal" else 0.0
    smoothing = float(loss_cfg.get("label_smoothing", 0.0))
    au_strength = float(loss_cfg.get("au_reweight", 0.0) or 0.0)
    if not (au_strength >= 0 and np.isfinite(au_strength)):
        raise ValueError(f"config.loss.au_reweight must be a finite number >= 0, got {au_strength}")

    def loss_fn(logits: jax.Array, labels: jax.Array, sample_weights: jax.Array | None = None) -> jax.Array:
        per_example = focal_loss(
            logits, labels, gamma=gamma, class_weights=weights, label_smoothing=smoothing, reduction="none"
        )
        if sample_weights is not None:
            per_example = per_example * sample_weights
        return per_example

    if au_strength == 0:
        return loss_fn

    from fer_jax.interpret.au import au_sample_weights

    def au_loss_fn(
        logits: jax.Array,
        labels: jax.Array,
        sample_weights: jax.Array | None = None,
        *,
        landmarks: jax.Array | None = None,
    ) -> jax.Array:
        if landmarks is None:
            raise ValueError(
                "config.loss.au_reweight > 0 needs the batch's landmarks (a model fed landmarks, e.g. MambaFER)"
            )
        au_w = jax.lax.stop_gradient(au_sample_weights(jnp.asarray(landmarks), au_strength))
        sw = au_w if sample_weights is None else au_w * sample_weights
        return loss_fn(logits, labels, sw)

    au_loss_fn.uses_landmarks = True
    return au_loss_fn
