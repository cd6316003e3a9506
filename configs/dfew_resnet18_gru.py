"""ResNet-18 + GRU baseline on DFEW (paper 1, Table 2), derived from ``configs/dfew_resnet18_lstm.py``.

Run::

    python -m fer_jax.train --config configs/dfew_resnet18_gru.py --workdir runs/dfew_gru \\
        --config.data.dir=/data/dfew_shards
"""

from __future__ import annotations

import ml_collections

from configs import dfew_resnet18_lstm


def get_config() -> ml_collections.ConfigDict:
    c = dfew_resnet18_lstm.get_config()
    c.model.name = "resnet18_gru"
    return c
