"""CPU demo of MambaFER, derived from ``configs/dfew.py``: a narrow backbone, 8 frames at 48 px.

Run::

    python -m fer_jax.train --config configs/demo_dfew.py --workdir runs/demo/dfew \\
        --config.data.dir=runs/demo/shards/dfew

Sized for a few minutes on 2 CPU cores with the synthetic DFEW shards (not yet timed end to end).
"""

from __future__ import annotations

import ml_collections

from configs import dfew


def get_config() -> ml_collections.ConfigDict:
    c = dfew.get_config()
    c.data.num_frames = 8
    c.data.image_size = 48
    c.model.backbone_width = 0.25
    c.model.backbone_depth = 0.35
    c.model.d_model = 128
    c.model.mhsa_heads = 4
    c.model.mlp_dims = (128, 64)
    c.model.dropout = 0.1
    c.model.scan_method = "sequential"
    c.train.batch_size = 16
    c.train.num_steps = 300
    c.train.eval_every_steps = 100
    c.train.early_stopping_patience = 0
    c.optim.lr = 2e-3
    c.optim.schedule = "onecycle"
    return c
