"""R(2+1)D-18 on DFEW (paper 1, Table 2 row [10], 42.36 G), derived from ``configs/dfew_resnet3d_18.py``.

Run::

    python -m fer_jax.train --config configs/dfew_r2plus1d_18.py --workdir runs/dfew_r2plus1d \\
        --config.data.dir=/data/dfew_shards

torchvision's ``video.r2plus1d_18``; its Kinetics-400 weights load with ``python -m fer_jax.convert
--arch r2plus1d_18`` and ``--config.model.backbone_weights=DIR``.
"""

from __future__ import annotations

import ml_collections

from configs import dfew_resnet3d_18


def get_config() -> ml_collections.ConfigDict:
    c = dfew_resnet3d_18.get_config()
    c.model.name = "r2plus1d_18"
    return c
