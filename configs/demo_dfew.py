"""CPU demo of MambaFER, derived from ``configs/dfew.py``: a narrow backbone, 8 frames at 48 px.

Run::

    python -m fer_jax.train --config configs/demo_dfew.py --workdir runs/demo/dfew \\
        --config.data.dir=runs/demo/shards/dfew

Data: ``python -m data_prep.synthesize --kind dfew --clips 700 --nuisance 0.3`` (less pose / background /
lighting variation than the default 1.0), then ``python -m data_prep.build --dataset dfew --frames 8
--size 48 --landmarks file:RAW/landmarks``.

Measured (2 shared CPU cores, disturbed by other jobs): build 358 s for 700 clips; training 300 steps at
batch 16 took ~0.7 s/step (about 23 clips/s), 5.3 min wall including compile and three evaluations.
Result on the synthetic test split (140 clips): UAR 0.143 / WAR 0.186 at step 300 (chance; train accuracy
also at chance), so this demo does NOT yet reach the UAR >= 0.80 target. Open: 48 px gives a 2x2 final
map (a slow XLA:CPU path and little spatial detail); lr/steps untuned. A rerun with
``--config.train.ema_decay=0.95`` gave the same UAR 0.143 (so the EMA is not the cause);
``python -m fer_jax.evaluate`` predicts one class (Angry) for every test clip.
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
