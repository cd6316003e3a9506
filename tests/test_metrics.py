"""fer_jax.metrics against hand-worked numbers and a brute-force reference."""

import numpy as np
import pytest

from fer_jax import metrics


def _reference(labels, preds, num_classes):
    """Per-class recall / precision / F1 by counting in plain Python."""
    recalls, f1s = [], []
    for c in range(num_classes):
        tp = sum(1 for y, p in zip(labels, preds) if y == c and p == c)
        fn = sum(1 for y, p in zip(labels, preds) if y == c and p != c)
        fp = sum(1 for y, p in zip(labels, preds) if y != c and p == c)
        if tp + fn:
            recalls.append(tp / (tp + fn))
        if tp + fn + fp:
            prec = tp / (tp + fp) if tp + fp else 0.0
            rec = tp / (tp + fn) if tp + fn else 0.0
            f1s.append(0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec))
    war = sum(1 for y, p in zip(labels, preds) if y == p) / len(labels)
    return war, sum(recalls) / len(recalls), sum(f1s) / len(f1s)


def test_hand_worked_example():
    labels = [0, 0, 1, 1, 1, 2]
    preds = [0, 1, 1, 1, 0, 2]
    m = metrics.classification_metrics(labels, preds, 3, class_names=["x", "y", "z"])
    assert m["confusion"] == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    assert m["war"] == pytest.approx(4 / 6)
    assert m["uar"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert m["per_class"] == pytest.approx({"x": 0.5, "y": 2 / 3, "z": 1.0})
    assert m["num_examples"] == 6


def test_random_against_bruteforce_with_mask():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 200)
    preds = np.where(rng.random(200) < 0.5, labels, rng.integers(0, 7, 200))
    mask = rng.random(200) < 0.8
    m = metrics.classification_metrics(labels, preds, 7, mask=mask)
    war, uar, f1 = _reference(labels[mask].tolist(), preds[mask].tolist(), 7)
    assert m["war"] == pytest.approx(war)
    assert m["uar"] == pytest.approx(uar)
    assert m["macro_f1"] == pytest.approx(f1)
    assert m["num_examples"] == int(mask.sum())


def test_absent_class_is_left_out_of_uar():
    m = metrics.classification_metrics([0, 0, 1], [0, 1, 1], 3)
    assert m["per_class"]["2"] is None
    assert m["uar"] == pytest.approx((0.5 + 1.0) / 2)


def test_per_lighting_accuracy():
    labels = np.array([0, 1, 0, 1])
    preds = np.array([0, 0, 0, 1])
    lighting = np.array([0, 0, 1, 1])
    m = metrics.classification_metrics(labels, preds, 2, lighting=lighting, lighting_names=["normal", "low"])
    assert m["per_lighting"] == pytest.approx({"normal": 0.5, "low": 1.0})


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="shape"):
        metrics.confusion_matrix([0, 1], [0], 3)
    with pytest.raises(ValueError, match="class names"):
        metrics.classification_metrics([0], [0], 2, class_names=["a"])
