"""HCE-MoE of MCO-E Net (paper 2, Section 3.2, eq. 10-17): attention router + heterogeneous experts.

Input: fused tokens ``H`` ``(batch, length, d)``; output: class logits ``(batch, num_classes)``.

- Router (eq. 10-11): ``P2(sigma(P1(LN(MHA(H) + H))))`` averaged over tokens -> softmax over the
  ``N_e`` experts -> top-k; the chosen weights are renormalised to sum to 1 (eq. 15).
- Experts, assigned to types cyclically (expert ``i`` has type ``expert_types[i % len(expert_types)]``):
  ``deep`` (eq. 12, ``L`` blocks ``d -> 4d -> dropout -> d`` with a residual), ``attention`` (eq. 13,
  ``P(LN(MHA(H) + H))``) and ``focal`` (eq. 14, ``C1(sigma(C3(H)))`` along the token axis). Each
  expert maps tokens to class logits and averages them over tokens.
- Orthogonal loss (eq. 16): ``MSE(W^T W, I)`` on the router's last layer.

Combination is dense: every expert runs on every example and the outputs are mixed with the sparse
top-k weights (zeros for unchosen experts). Shapes stay static under ``jit`` and unchosen experts get
exactly zero gradient. A per-example gather cannot avoid this cost for heterogeneous experts: a
``vmap`` of ``lax.switch`` over the expert index lowers to a ``select`` that evaluates every branch.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fer_jax.models.compute import f32_softmax_attention

EXPERT_TYPES = ("deep", "attention", "focal")
GELUS = ("tanh", "exact")


def gelu_exact(x: jax.Array) -> jax.Array:
    """The erf GELU of torch's ``nn.GELU()`` (jax.nn.gelu's tanh form differs by up to 4.7e-4)."""
    return jax.nn.gelu(x, approximate=False)


def gelu_fn(kind: str):
    """``"tanh"`` (jax.nn.gelu's default approximation) or ``"exact"`` (erf, torch ``nn.GELU()``'s)."""
    if kind not in GELUS:
        raise ValueError(f"gelu must be one of {GELUS}, got {kind!r}")
    return jax.nn.gelu if kind == "tanh" else gelu_exact


class DeepExpert(nnx.Module):
    """Eq. 12: ``depth`` residual blocks ``d -> 4d -> dropout -> d`` then ``P3: d -> classes``."""

    def __init__(
        self,
        d: int,
        num_classes: int,
        *,
        depth: int = 5,
        dropout: float = 0.5,
        res_coef: float = 1.0,
        rngs: nnx.Rngs,
    ):
        self.up = nnx.List([nnx.Linear(d, 4 * d, rngs=rngs) for _ in range(depth)])
        self.down = nnx.List([nnx.Linear(4 * d, d, rngs=rngs) for _ in range(depth)])
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        # official code: learnable residual coefficient (0.3 there); 1.0 is the plain residual
        self.res_coef = nnx.Param(jnp.asarray(res_coef, jnp.float32))
        self.head = nnx.Linear(d, num_classes, rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        """``(b, l, d) -> (b, classes)``."""
        for up, down in zip(self.up, self.down):
            h = down(self.dropout(up(h))) + self.res_coef[...] * h
        return self.head(h).mean(axis=1)


class AttentionExpert(nnx.Module):
    """Eq. 13: ``P(LN(MHA(H) + H))``, logits averaged over tokens."""

    def __init__(
        self, d: int, num_classes: int, *, num_heads: int = 2, layer_norm_eps: float = 1e-6, rngs: nnx.Rngs
    ):
        self.attn = nnx.MultiHeadAttention(
            num_heads, d, decode=False, attention_fn=f32_softmax_attention, rngs=rngs
        )
        self.norm = nnx.LayerNorm(d, epsilon=layer_norm_eps, rngs=rngs)
        self.head = nnx.Linear(d, num_classes, rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        """``(b, l, d) -> (b, classes)``."""
        return self.head(self.norm(self.attn(h) + h)).mean(axis=1)


class FocalExpert(nnx.Module):
    """Eq. 14: ``C1(GELU(C3(H)))``, convolutions along the token axis (same padding)."""

    def __init__(self, d: int, num_classes: int, *, hidden: int = 512, gelu: str = "tanh", rngs: nnx.Rngs):
        gelu_fn(gelu)  # fail early on a bad name
        self.gelu = gelu  # the name (a static attribute), applied through gelu_fn
        self.conv3 = nnx.Conv(d, hidden, kernel_size=(3,), padding="SAME", rngs=rngs)
        self.conv1 = nnx.Conv(hidden, num_classes, kernel_size=(1,), rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        """``(b, l, d) -> (b, classes)``."""
        # sigma of eq. 14 is unspecified; GELU as in the official code
        return self.conv1(gelu_fn(self.gelu)(self.conv3(h))).mean(axis=1)


class AttentionRouter(nnx.Module):
    """Eq. 10: ``P2(GELU(P1(LN(MHA(H) + H))))`` pooled over tokens -> ``(b, num_experts)`` logits."""

    def __init__(
        self,
        d: int,
        num_experts: int,
        *,
        hidden: int,
        num_heads: int = 4,
        gelu: str = "tanh",
        layer_norm_eps: float = 1e-6,
        rngs: nnx.Rngs,
    ):
        gelu_fn(gelu)  # fail early on a bad name
        self.gelu = gelu  # the name (a static attribute), applied through gelu_fn
        self.attn = nnx.MultiHeadAttention(
            num_heads, d, decode=False, attention_fn=f32_softmax_attention, rngs=rngs
        )
        self.norm = nnx.LayerNorm(d, epsilon=layer_norm_eps, rngs=rngs)
        self.fc1 = nnx.Linear(d, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, num_experts, rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        z = gelu_fn(self.gelu)(self.fc1(self.norm(self.attn(h) + h)))
        # P2 is linear, so pooling before it equals pooling its per-token outputs
        return self.fc2(z.mean(axis=1))


def orthogonal_loss(w: jax.Array) -> jax.Array:
    """Eq. 16: ``mean((W^T W - I)^2)`` for ``w`` ``(in, out)``; 0 iff the columns are orthonormal.

    ``w`` is the router's last kernel in Flax layout ``(hidden, num_experts)``, one column per expert
    (``W W^T`` of PyTorch's ``(out, in)`` weight), so the loss pushes the experts' routing directions
    apart; ``W W^T`` of this layout would ask a rank-``N_e`` matrix to be the ``hidden``-size identity.
    """
    gram = w.T @ w
    return jnp.mean((gram - jnp.eye(gram.shape[0], dtype=gram.dtype)) ** 2)


def top_k_weights(probs: jax.Array, k: int) -> jax.Array:
    """``(b, n)`` probabilities -> ``(b, n)`` weights: the top ``k`` renormalised to sum 1, zeros elsewhere."""
    values, idx = jax.lax.top_k(probs, k)
    values = values / jnp.sum(values, axis=-1, keepdims=True)
    rows = jnp.arange(probs.shape[0])[:, None]
    return jnp.zeros_like(probs).at[rows, idx].set(values)


class HCEMoE(nnx.Module):
    """Attention router + ``num_experts`` heterogeneous experts; ``(b, l, d) -> logits, aux``."""

    def __init__(
        self,
        d: int,
        num_classes: int,
        *,
        num_experts: int = 8,
        top_k: int = 2,
        expert_types: Sequence[str] = EXPERT_TYPES,
        router_hidden: int = 512,
        router_heads: int = 4,
        attention_heads: int = 2,
        deep_depth: int = 5,
        deep_dropout: float = 0.5,
        deep_res_coef: float = 1.0,
        focal_hidden: int = 512,
        gelu: str = "tanh",
        layer_norm_eps: float = 1e-6,
        rngs: nnx.Rngs,
    ):
        """``gelu`` ("tanh" | "exact") and ``layer_norm_eps`` (flax's 1e-6; torch's 1e-5) for parity with
        the official code, whose ``nn.GELU()`` is exact and ``nn.LayerNorm`` uses 1e-5."""
        expert_types = tuple(expert_types)
        unknown = set(expert_types) - set(EXPERT_TYPES)
        if unknown or not expert_types:
            raise ValueError(f"expert_types must be a non-empty subset of {EXPERT_TYPES}, got {expert_types}")
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in [1, num_experts={num_experts}], got {top_k}")
        self.top_k = top_k
        self.types = tuple(expert_types[i % len(expert_types)] for i in range(num_experts))

        def make(kind: str) -> nnx.Module:
            if kind == "deep":
                return DeepExpert(
                    d, num_classes, depth=deep_depth, dropout=deep_dropout, res_coef=deep_res_coef, rngs=rngs
                )
            if kind == "attention":
                return AttentionExpert(
                    d, num_classes, num_heads=attention_heads, layer_norm_eps=layer_norm_eps, rngs=rngs
                )
            return FocalExpert(d, num_classes, hidden=focal_hidden, gelu=gelu, rngs=rngs)

        self.experts = nnx.List([make(kind) for kind in self.types])
        self.router = AttentionRouter(
            d,
            num_experts,
            hidden=router_hidden,
            num_heads=router_heads,
            gelu=gelu,
            layer_norm_eps=layer_norm_eps,
            rngs=rngs,
        )

    def orthogonal_loss(self) -> jax.Array:
        return orthogonal_loss(self.router.fc2.kernel[...])

    def __call__(self, h: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """``h`` ``(b, l, d)`` -> logits ``(b, classes)`` and stats ``expert_weights``, ``router_probs``
        (both ``(b, num_experts)``)."""
        # the router computes in float32 whatever the compute dtype (its input cast up; no-op at float32)
        probs = jax.nn.softmax(self.router(h.astype(jnp.float32)).astype(jnp.float32), axis=-1)
        weights = top_k_weights(probs, self.top_k)
        outs = jnp.stack([expert(h) for expert in self.experts], axis=1)  # (b, n_e, classes)
        logits = jnp.einsum("be,bec->bc", weights, outs)
        return logits, {"expert_weights": weights, "router_probs": probs}
