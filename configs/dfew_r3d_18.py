"""3D ResNet-18 baseline on DFEW (paper 1, Table 2), derived from ``configs/dfew.py``.

Run::

    python -m fer_jax.train --config configs/dfew_r3d_18.py --workdir runs/dfew_r3d \\
        --config.data.dir=/data/dfew_shards

Random initialisation (the converter has no key table for torchvision's video models yet).
"""

from __future__ import annotations

import ml_collections

from configs import dfew


def get_config() -> ml_collections.ConfigDict:
    c = dfew.get_config()
    c.model = ml_collections.ConfigDict(
        {"name": "r3d_18", "num_classes": 7, "width": 64, "dropout": 0.3, "backbone_weights": ""}
    )
    return c
