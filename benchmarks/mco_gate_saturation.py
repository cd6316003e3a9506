"""MCO-E Net's eq. 8 gate (sigmoid of the sum over features of y_rgb * y_event), measured at initialisation:
the paper variant (d_model 128) against the reference variant (the official d = 4).

    PYTHONPATH=. python benchmarks/mco_gate_saturation.py

Random inputs (standard normal, batch 8, 64 px), fresh weights (seed 0), per token: the fraction of
saturated gates (alpha < 0.01 or > 0.99) and of soft ones (0.1 < alpha < 0.9), on the MCIB inputs
(eq. 8 as written, ``mcib.gate_on="input"``) and on the projected features (the official code).
Recorded in docs/design_decisions.md (MCO-E Net).
"""

import jax
import numpy as np
from flax import nnx

from configs import see, see_reference
from fer_jax.models import mco_mamba, registry


def measure(c, label):
    c.data.image_size = 64
    c.data.image_width = 0  # square, as measured (see_reference's default is 100 x 133)
    model = registry.build(c, rngs=nnx.Rngs(0))
    model.eval()
    rng = np.random.default_rng(0)
    x = {
        k: rng.standard_normal((8, *v.shape[1:])).astype(np.float32)
        for k, v in registry.dummy_inputs(c, 1).items()
    }
    gd, st = nnx.split(model)

    def f(s, x):
        m = nnx.merge(gd, s)
        ys = m.mamba(*[m.tokens(k, x[k]) for k in ("rgb", "event")])
        a = mco_mamba.mcib_gate(*ys)
        pr = m.mcib.proj_rgb(ys[0])
        pe = m.mcib.proj_event(ys[1])
        return a, mco_mamba.mcib_gate(pr, pe)

    a_in, a_proj = jax.jit(f)(st, x)
    for name, a in (("input", a_in), ("projected", a_proj)):
        a = np.asarray(a).ravel()
        print(
            f"{label} gate on {name}: tokens {a.size}, frac <0.01 or >0.99: {np.mean((a < 0.01) | (a > 0.99)):.3f}, frac in [0.1,0.9]: {np.mean((a > 0.1) & (a < 0.9)):.3f}"
        )


c = see.get_config()
measure(c, "paper d_model=128")
c = see_reference.get_config()
c.model.neck_dim = 32
c.model.moe.deep_depth = 1
measure(c, "reference d_model=4")
