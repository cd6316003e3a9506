"""RGB-only ablation of the CPU demo (Table 2 row A at demo size), derived from configs/demo_see.py.

Run::

    python -m fer_jax.train --config configs/demo_see_rgb.py --workdir runs/demo/see_rgb \\
        --config.data.dir=runs/demo/see_shards

The model ignores the ``event`` input but keeps the same input spec, so the same shards and pipeline
feed it; compare its low-light accuracy with configs/demo_see.py's.
"""

from __future__ import annotations

from configs import demo_see, see


def get_config():
    return see.apply_ablation(demo_see.get_config(), "table2_A")
