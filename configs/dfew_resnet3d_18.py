"""Hara et al.'s 3D ResNet-18 on DFEW (paper 1, Table 2 row [11], 8.32 G), derived from ``configs/dfew.py``.

Run::

    python -m fer_jax.train --config configs/dfew_resnet3d_18.py --workdir runs/dfew_resnet3d \\
        --config.data.dir=/data/dfew_shards

Same data, loss and optimiser as MambaFER (``configs/dfew.py``), so the rows differ only in the model.
Kinetics weights: convert Hara's ``r3d18_K_200ep.pth`` with ``python -m fer_jax.convert --arch
resnet3d_18`` and pass ``--config.model.backbone_weights=DIR``. The published baselines ran at 112 px:
``--config.data.image_size=112`` with shards built at 112 reproduces that input.
"""

from __future__ import annotations

import ml_collections

from configs import dfew


def get_config() -> ml_collections.ConfigDict:
    c = dfew.get_config()
    c.model = ml_collections.ConfigDict(
        {"name": "resnet3d_18", "num_classes": 7, "width": 64, "dropout": 0.3, "backbone_weights": ""}
    )
    return c
