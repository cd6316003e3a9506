"""torchvision's R3D-18 (Tran et al.) on DFEW, derived from ``configs/dfew_resnet3d_18.py``.

Run::

    python -m fer_jax.train --config configs/dfew_r3d_18.py --workdir runs/dfew_r3d \\
        --config.data.dir=/data/dfew_shards

Not a Table 2 row (the paper's 3D ResNet-18 is Hara's, ``configs/dfew_resnet3d_18.py``; this one has a
3x7x7 stem and no max-pool, 40.7 GMACs per clip): kept because torchvision ships Kinetics-400 weights for
it (``python -m fer_jax.convert --arch r3d_18``, then ``--config.model.backbone_weights=DIR``).
"""

from __future__ import annotations

import ml_collections

from configs import dfew_resnet3d_18


def get_config() -> ml_collections.ConfigDict:
    c = dfew_resnet3d_18.get_config()
    c.model.name = "r3d_18"
    return c
