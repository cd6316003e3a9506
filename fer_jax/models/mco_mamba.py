"""MCO-Mamba of MCO-E Net (paper 2, Section 3.1, eq. 1-9, Algorithm 1): MJOS scans + MCIB fusion.

- :class:`MCOMamba`: one bidirectional Mamba (``fer_jax.models.ssm.BiMamba``, Vim "v2": shared
  in/out projections, own conv1d/x_proj/dt_proj/A/D per direction) per modality. Between "compute
  (dt, B, C)" and "scan" the Multi-modal Joint Optimization Scheme (MJOS) acts on the SSM parameters
  named by ``params`` (a subset of ``"ABCD"``), per direction:

  - ``mode="fuse"`` (eq. 5): ``M(P_a, P_b) = W [P_a ; P_b] + b + P_a``, one ``(W, b)`` per parameter,
    modality and direction (Algorithm 1 lines 8-14). B, C ``(batch, length, N)`` concatenate on the
    state axis; A on the state axis of ``A_log`` (``A = -exp(M(A_log_a, A_log_b))`` keeps A negative,
    so the fused system still decays); D ``(d_inner,)`` on its only axis. Table 7 rows E-I and K.
  - ``mode="share"`` (Table 7 rows A-D): the event scan uses the RGB parameter: A_log / D directly,
    B / C through the RGB block's x_proj columns applied to the event tokens (the parameter matrix is
    shared, the values stay input-dependent).
  - ``mode="exchange"`` (row J with ``"ABCD"``): each modality's scan takes the other's values.
  - ``mode="none"``: two independent bidirectional Mamba blocks (the "w/o MJOS" reading with scans).

  The official code (REFERENCES.md) fuses differently: one bias-free projection of the concatenated raw
  ``x_proj`` outputs ``[x_dbl_rgb ; x_dbl_event]`` added to both modalities' B (and another to C):
  ``source="x_dbl"``, ``tied=True``, ``bias=False``.
  Its backward pass is hand-written (BC.py, ``MambaInnerFnNoOutProj.backward``) and differs from the
  true gradient; ``grad="authors"`` reproduces it: the fusion weights receive THEMSELVES as their
  gradient (:func:`authors_grad`; with AdamW and weight decay they shrink towards 0 over training), no
  gradient flows through the fusion term into either modality's ``x_dbl`` (so none crosses
  modalities), ``D`` gets none (stays at 1), both modalities read ONE ``A_log`` / ``A_b_log`` (the RGB
  block's; theirs are two aliased parameters of one tensor), and the backward scan reads the forward
  ``dt_proj`` bias. ``grad="autodiff"`` (default) trains everything with true gradients.
- :class:`MCIB` (eq. 6-9): per-modality projections, one shared multi-head attention used both ways
  (RGB queries attend to event keys/values and the reverse), the parameter-free gate
  ``alpha = sigmoid(sum_d(a * b))`` per token (sum over the feature axis, as the official code) and
  ``H = alpha * y'_rgb + (1 - alpha) * y'_event``; ``residual=True`` adds the official
  ``(p_rgb + p_event) / 2``.

Shapes: tokens ``(batch, length, d_model)`` in and out.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fer_jax.models import ssm
from fer_jax.models.compute import f32_softmax_attention

MJOS_MODES = ("fuse", "share", "exchange", "none")
MJOS_GRADS = ("autodiff", "authors")
MODALITIES = ("rgb", "event")


@jax.custom_vjp
def authors_grad(w: jax.Array) -> jax.Array:
    """Identity whose gradient is ``w`` itself, whatever flows back: the update the official backward
    pass (BC.py, ``MambaInnerFnNoOutProj.backward``) gives the MJOS fusion weights, which it returns
    in place of their gradients."""
    return w


def _authors_grad_fwd(w):
    return w, w


def _authors_grad_bwd(w, g):
    del g
    return (w,)


authors_grad.defvjp(_authors_grad_fwd, _authors_grad_bwd)


def _check_params(params: str) -> str:
    params = "".join(sorted(set(params.upper())))
    if set(params) - set("ABCD"):
        raise ValueError(f"MJOS params must be letters of 'ABCD', got {params!r}")
    return params


class MCOMamba(nnx.Module):
    """Two bidirectional Mamba blocks whose SSM parameters interact through MJOS.

    ``__call__(x_rgb, x_event)`` with tokens ``(batch, length, d_model)`` returns ``(y_rgb, y_event)``
    of the same shape. With one modality (``modalities=("rgb",)``) it is one BiMamba and takes one input.
    """

    def __init__(
        self,
        d_model: int,
        *,
        modalities: tuple[str, ...] = MODALITIES,
        mode: str = "fuse",
        params: str = "BC",
        source: str = "param",
        tied: bool = False,
        bias: bool = True,
        grad: str = "autodiff",
        residual: bool = True,
        d_state: int = 16,
        expand: int = 2,
        dt_rank: int | str = "auto",
        combine: str = "mean",
        scan_method: str = "auto",
        rngs: nnx.Rngs,
    ):
        modalities = tuple(modalities)
        if not modalities or set(modalities) - set(MODALITIES) or len(set(modalities)) != len(modalities):
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {modalities}")
        if mode not in MJOS_MODES:
            raise ValueError(f"MJOS mode must be one of {MJOS_MODES}, got {mode!r}")
        if grad not in MJOS_GRADS:
            raise ValueError(f"MJOS grad must be one of {MJOS_GRADS}, got {grad!r}")
        if source not in ("param", "x_dbl"):
            raise ValueError(f"MJOS source must be 'param' or 'x_dbl', got {source!r}")
        params = _check_params(params)
        if len(modalities) == 1 or mode == "none":
            mode, params = "none", ""
        if source == "x_dbl" and (mode != "fuse" or set(params) - set("BC")):
            raise ValueError("MJOS source 'x_dbl' (official code) fuses only B and C in mode 'fuse'")
        self.modalities = modalities
        self.mode, self.params, self.source, self.tied = mode, params, source, tied
        self.grad = grad
        self.residual = residual
        self.scan_method = ssm.resolve_method(scan_method)
        kw = dict(d_state=d_state, expand=expand, dt_rank=dt_rank, combine=combine, scan_method=scan_method)
        self.blocks = nnx.Dict({m: ssm.BiMamba(d_model, rngs=rngs, **kw) for m in modalities})
        blk = self.blocks[modalities[0]]
        self.d_inner, self.d_state, self.dt_rank = blk.d_inner, blk.d_state, blk.dt_rank
        fusers = {}
        if mode == "fuse":
            x_dbl = self.dt_rank + 2 * d_state
            width = {"A": d_state, "B": d_state, "C": d_state, "D": self.d_inner}
            targets = ("shared",) if tied else modalities
            for p in params:
                d_in = 2 * x_dbl if source == "x_dbl" else 2 * width[p]
                for direction in ("f", "b"):
                    for m in targets:
                        fusers[f"{p}_{direction}_{m}"] = nnx.Linear(d_in, width[p], use_bias=bias, rngs=rngs)
        # MJOS projections keyed "<param>_<f|b>_<modality|shared>"
        self.mjos = nnx.Dict(fusers)

    # -- MJOS ---------------------------------------------------------------------------------------
    def _ssm_values(self, m: str, xi: jax.Array, backward: bool) -> dict[str, jax.Array]:
        blk = self.blocks[m]
        xc = blk.conv(xi, backward)
        dt, B, C = blk.dt_bc(xc, backward)
        authors = self.grad == "authors"
        # authors: A_log_rgb / A_log_event are one tensor in their code (aliased nn.Parameters), so both
        # modalities read the RGB block's (both gradients land on it)
        a_blk = self.blocks["rgb"] if authors and "rgb" in self.blocks else blk
        A_log = a_blk.A_b_log if backward else a_blk.A_log
        D = (blk.D_b if backward else blk.D)[...]
        # authors: their backward returns no gradient for D, which stays at its initial 1
        return dict(xc=xc, dt=dt, A=A_log[...], B=B, C=C, D=jax.lax.stop_gradient(D) if authors else D)

    def _x_proj_kernel(self, m: str, backward: bool) -> jax.Array:
        blk = self.blocks[m]
        return (blk.x_proj_b if backward else blk.x_proj).kernel[...]

    def _interact(self, vals: dict[str, dict], backward: bool) -> dict[str, dict]:
        """Applies MJOS to the per-modality values ``{modality: {A, B, C, D, xc, dt}}`` of one direction."""
        if self.mode == "none":
            return vals
        a, b = vals["rgb"], vals["event"]
        new = {"rgb": dict(a), "event": dict(b)}
        d = "b" if backward else "f"
        n, r = self.d_state, self.dt_rank
        if self.mode == "exchange":
            for p in self.params:
                new["rgb"][p], new["event"][p] = b[p], a[p]
        elif self.mode == "share":
            for p in self.params:
                if p in "AD":
                    new["event"][p] = a[p]
                else:  # the RGB projection applied to the event tokens
                    cols = slice(r, r + n) if p == "B" else slice(r + n, r + 2 * n)
                    kernel = self._x_proj_kernel("rgb", backward)[:, cols]
                    new["event"][p] = b["xc"] @ kernel.astype(b["xc"].dtype)
        else:  # fuse, eq. 5
            authors = self.grad == "authors"
            if self.source == "x_dbl":
                both = jnp.concatenate(
                    [v["xc"] @ self._x_proj_kernel(m, backward) for m, v in (("rgb", a), ("event", b))], -1
                )
            for p in self.params:
                term = None
                for m, own, other in (("rgb", a, b), ("event", b, a)):
                    # tied on x_dbl: one term for both modalities, computed once, so that the authors'
                    # update reaches the shared weights once, as in their code
                    if term is None or not (self.tied and self.source == "x_dbl"):
                        proj = self.mjos[f"{p}_{d}_{'shared' if self.tied else m}"]
                        cat = both if self.source == "x_dbl" else jnp.concatenate([own[p], other[p]], -1)
                        term = self._fuse(proj, cat) if authors else proj(cat)
                    new[m][p] = term + own[p]
        return new

    @staticmethod
    def _fuse(proj: nnx.Linear, cat: jax.Array) -> jax.Array:
        """The fusion term as the official backward pass treats it: no gradient into its input (so none
        crosses modalities, nor reaches x_proj through it), and the weights' "gradient" is themselves."""
        y = jax.lax.stop_gradient(cat) @ authors_grad(proj.kernel[...])
        return y + authors_grad(proj.bias[...]) if proj.bias is not None else y

    def __call__(self, *xs: jax.Array) -> tuple[jax.Array, ...]:
        """``(x_rgb, x_event)`` (or the one modality's tokens) ``(batch, length, d_model)`` -> same."""
        if len(xs) != len(self.modalities):
            raise ValueError(f"expected {len(self.modalities)} inputs ({self.modalities}), got {len(xs)}")
        split = {m: self.blocks[m].split_in(x) for m, x in zip(self.modalities, xs)}
        ys = {m: [] for m in self.modalities}
        for backward in (False, True):
            vals = {m: self._ssm_values(m, split[m][0], backward) for m in self.modalities}
            vals = self._interact(vals, backward)
            for m in self.modalities:
                blk, v = self.blocks[m], vals[m]
                # authors: their backward scan is passed the FORWARD dt_proj bias (dt_proj_b's is unused)
                b_proj = blk.dt_proj_b if backward and self.grad != "authors" else blk.dt_proj
                dt_bias = b_proj.bias[...]
                ys[m].append(
                    ssm.selective_scan(
                        v["xc"],
                        v["dt"],
                        -jnp.exp(v["A"].astype(jnp.float32)),
                        v["B"],
                        v["C"],
                        D=v["D"],
                        z=split[m][1],
                        delta_bias=dt_bias,
                        delta_softplus=True,
                        reverse=backward,
                        method=self.scan_method,
                    )
                )
        outs = []
        for m, x in zip(self.modalities, xs):
            y = self.blocks[m].combine_out(*ys[m])
            # official code: tokens + MCO-Mamba output, a residual around the block
            outs.append(y + x if self.residual else y)
        return tuple(outs)


def mcib_gate(a: jax.Array, b: jax.Array) -> jax.Array:
    """Eq. 8 per token: ``sigmoid(sum over features of a * b)``; ``(batch, length, d)`` -> ``(batch, length, 1)``."""
    return jax.nn.sigmoid(jnp.sum(a * b, axis=-1, keepdims=True))


class MCIB(nnx.Module):
    """Multi-modal Collaborative Interaction Block (eq. 6-9): ``(y_rgb, y_event) -> H``, all ``(b, l, d)``.

    ``gate_on="input"`` computes alpha from ``y_rgb * y_event`` as eq. 8 writes it; ``"projected"``
    from the projected features as the official code does.
    """

    def __init__(
        self,
        d: int,
        *,
        num_heads: int = 2,
        gate_on: str = "input",
        residual: bool = False,
        rngs: nnx.Rngs,
    ):
        if gate_on not in ("input", "projected"):
            raise ValueError(f"gate_on must be 'input' or 'projected', got {gate_on!r}")
        self.gate_on, self.residual = gate_on, residual
        self.proj_rgb = nnx.Linear(d, d, rngs=rngs)
        self.proj_event = nnx.Linear(d, d, rngs=rngs)
        # one attention shared by both directions, as the official code
        self.attn = nnx.MultiHeadAttention(
            num_heads, d, decode=False, attention_fn=f32_softmax_attention, rngs=rngs
        )

    def __call__(self, y_rgb: jax.Array, y_event: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns ``H`` ``(b, l, d)`` and the gate ``alpha`` ``(b, l, 1)``."""
        p_rgb, p_event = self.proj_rgb(y_rgb), self.proj_event(y_event)
        # Eq. 6-7 read with the text: RGB features retrieve event details (RGB queries, event keys/values)
        # and the reverse; this is the official code's pairing with its gate (eq. 9 with y'_rgb here).
        y_rgb_att = self.attn(p_rgb, p_event, p_event)
        y_event_att = self.attn(p_event, p_rgb, p_rgb)
        alpha = mcib_gate(y_rgb, y_event) if self.gate_on == "input" else mcib_gate(p_rgb, p_event)
        h = alpha * y_rgb_att + (1 - alpha) * y_event_att
        if self.residual:
            h = h + (p_rgb + p_event) / 2
        return h, alpha
