"""Former-DFER on DFEW (paper 1, Table 2 row [14], 9.11 G), derived from ``configs/dfew.py``.

Run::

    python -m fer_jax.train --config configs/dfew_former_dfer.py --workdir runs/dfew_former \\
        --config.data.dir=/data/dfew_shards

The authors' network (``fer_jax/models/former_dfer.py``) on MambaFER's data, loss and optimiser; their
own recipe was SGD lr 0.01, StepLR, 100 epochs, batch 32. ``--config.model.backbone_weights=DIR`` loads a
converted ImageNet ResNet-18 (``python -m fer_jax.convert --arch resnet18``) into the S-Former. Their code
fixes 16 frames at 112 px; position embeddings follow ``data.num_frames`` / ``data.image_size`` here.
"""

from __future__ import annotations

import ml_collections

from configs import dfew


def get_config() -> ml_collections.ConfigDict:
    c = dfew.get_config()
    c.model = ml_collections.ConfigDict(
        {"name": "former_dfer", "num_classes": 7, "dropout": 0.0, "backbone_weights": ""}
    )
    return c
