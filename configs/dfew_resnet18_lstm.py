"""ResNet-18 + LSTM baseline on DFEW (paper 1, Table 2), derived from ``configs/dfew.py``.

Run::

    python -m fer_jax.train --config configs/dfew_resnet18_lstm.py --workdir runs/dfew_lstm \\
        --config.data.dir=/data/dfew_shards
"""

from __future__ import annotations

import ml_collections

from configs import dfew


def get_config() -> ml_collections.ConfigDict:
    c = dfew.get_config()
    c.model = ml_collections.ConfigDict(
        {"name": "resnet18_lstm", "num_classes": 7, "rnn_hidden": 512, "dropout": 0.3, "backbone_weights": ""}
    )
    return c
