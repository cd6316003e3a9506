"""MCO-E Net on DSEE (paper 2, Table 3), derived from configs/see.py: same model and training.

Run::

    python -m fer_jax.train --config configs/dsee.py --workdir runs/dsee \\
        --config.data.dir=/data/dsee_shards --config.model.backbone_weights=/weights/resnet18

DSEE's events come as raw streams (or DSEE's own frames); the shard builder turns them into voxel grids
of ``model.event_channels`` = B = 3 bins (paper A.6). Other bin counts: ``--config.model.event_channels=5``
(the shards must be built with the same number).
"""

from __future__ import annotations

from configs import see


def get_config():
    c = see.get_config()
    c.data.dataset = "dsee"
    c.model.event_channels = 3
    return c
