"""PyTorch's default initialisation, applied after construction to a module's Linear / Conv / attention
layers (``model.init = "torch"`` of MCO-E Net's reference variant, whose official code keeps torch's
defaults for its MoE, MCIB and neck; flax's lecun-normal kernels and zero biases change how it trains).

torch defaults reproduced:

- ``nn.Linear`` / ``nn.Conv1d``: weight kaiming-uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), bias
  U(+-1/sqrt(fan_in)); fan_in = in_features (x kernel size for a conv);
- ``nn.MultiheadAttention``: packed ``in_proj_weight (3d, d)`` xavier-uniform, bound sqrt(6 / (d + 3d)),
  ``in_proj_bias`` 0; ``out_proj`` weight U(+-1/sqrt(d)), bias 0;
- ``nn.LayerNorm``: ones / zeros, flax's too (left alone).
"""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx


def _uniform(rngs: nnx.Rngs, var: nnx.Variable, bound: float) -> None:
    var.set_value(jax.random.uniform(rngs.params(), var.shape, var.get_value().dtype, -bound, bound))


def _zeros(var: nnx.Variable) -> None:
    var.set_value(jax.numpy.zeros(var.shape, var.get_value().dtype))


def torch_default_init(module: nnx.Module, rngs: nnx.Rngs) -> nnx.Module:
    """Re-draws every ``nnx.Linear``, ``nnx.Conv`` and ``nnx.MultiHeadAttention`` in ``module`` as torch
    initialises its counterpart (module docstring); in place, also returned."""
    for _, m in nnx.iter_modules(module):
        if isinstance(m, nnx.MultiHeadAttention):
            d = int(m.in_features)
            for proj in (m.query, m.key, m.value):
                _uniform(rngs, proj.kernel, math.sqrt(6.0 / (d + 3 * d)))
                if proj.bias is not None:
                    _zeros(proj.bias)
            _uniform(rngs, m.out.kernel, 1.0 / math.sqrt(d))
            if m.out.bias is not None:
                _zeros(m.out.bias)
        elif isinstance(m, (nnx.Linear, nnx.Conv)):
            fan_in = int(np.prod(m.kernel.shape[:-1]))
            bound = 1.0 / math.sqrt(fan_in)
            _uniform(rngs, m.kernel, bound)
            if m.bias is not None:
                _uniform(rngs, m.bias, bound)
    return module
