"""fer_jax.training.logging: metrics.jsonl rows, TensorBoard event files, truncation on resume."""

import math

import numpy as np

from fer_jax.training import logging as log_lib


def test_metric_writer_writes_jsonl_and_tensorboard(tmp_path):
    writer = log_lib.MetricWriter(tmp_path)
    writer.scalars(1, "train", {"loss": np.float32(0.5), "lr": 1e-3})
    writer.scalars(2, "val", {"uar": 0.25, "nan": math.nan, "inf": math.inf, "per_class": [0.1, 0.2]})
    writer.close()
    rows = log_lib.read_metrics(tmp_path)
    assert [(r["step"], r["split"]) for r in rows] == [(1, "train"), (2, "val")]
    assert rows[0]["loss"] == 0.5 and rows[1]["per_class"] == [0.1, 0.2]
    assert rows[1]["nan"] is None and rows[1]["inf"] == math.inf
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))  # tensorboardX is a hard dependency


def test_truncate_metrics_drops_later_steps(tmp_path):
    writer = log_lib.MetricWriter(tmp_path, tensorboard=False)
    for step in (1, 2, 3):
        writer.scalars(step, "train", {"loss": float(step)})
    writer.close()
    assert not (tmp_path / "tb").exists()
    log_lib.truncate_metrics(tmp_path, 2)
    assert [r["step"] for r in log_lib.read_metrics(tmp_path)] == [1, 2]
    assert log_lib.read_metrics(tmp_path / "absent") == []
