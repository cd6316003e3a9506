"""``model.mjos.grad = "authors"``: the official hand-written backward pass of MCO-Mamba (BC.py), one test
per effect (fusion weights get themselves as gradient, no gradient crosses modalities through the fusion,
D gets none), plus the aliased A, the forward bias of the backward scan and an unchanged forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fer_jax.models import mco_mamba

OFFICIAL = dict(mode="fuse", params="BC", source="x_dbl", tied=True, bias=False)


def _pair(grad: str, seed: int = 0):
    model = mco_mamba.MCOMamba(
        4, d_state=4, scan_method="associative", grad=grad, rngs=nnx.Rngs(seed), **OFFICIAL
    )
    # their code: one A tensor for both modalities, and the backward scan reads the forward bias
    for blk in model.blocks.values():
        blk.dt_proj_b.bias[...] = blk.dt_proj.bias[...]
    for name in ("A_log", "A_b_log"):
        getattr(model.blocks["event"], name)[...] = getattr(model.blocks["rgb"], name)[...]
    return model


def _inputs():
    rng = np.random.default_rng(0)
    return tuple(jnp.asarray(rng.standard_normal((2, 5, 4)), jnp.float32) for _ in range(2))


def _loss(y_rgb, y_event):
    return jnp.sum(jnp.sin(3 * y_rgb)) + jnp.sum(jnp.cos(2 * y_event))


_CACHE: dict = {}


def _grads(grad: str):
    """Gradients of ``_loss`` w.r.t. every parameter (one jitted call per mode, cached for the module)."""
    if grad not in _CACHE:
        model = _pair(grad)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        x_rgb, x_event = _inputs()

        def loss(p):
            ys = nnx.merge(graphdef, p, rest)(x_rgb, x_event)
            return _loss(*ys), ys

        grads, ys = jax.jit(jax.grad(loss, has_aux=True))(params)
        _CACHE[grad] = (model, nnx.merge(graphdef, grads, rest), ys)
    return _CACHE[grad][:2]


def _outputs(grad: str):
    _grads(grad)
    return _CACHE[grad][2]


def test_forward_is_the_same_either_way():
    for a, b in zip(_outputs("autodiff"), _outputs("authors")):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=0)


def test_authors_fusion_weights_get_themselves_as_gradient():
    model, grads = _grads("authors")
    _, true = _grads("autodiff")
    for key in ("B_f_shared", "C_f_shared", "B_b_shared", "C_b_shared"):
        kernel = np.asarray(model.mjos[key].kernel[...])
        np.testing.assert_array_equal(np.asarray(grads.mjos[key].kernel[...]), kernel)
        assert not np.allclose(np.asarray(true.mjos[key].kernel[...]), kernel)  # not the true gradient


def test_authors_no_gradient_crosses_modalities_through_the_fusion():
    x_rgb, x_event = _inputs()

    def d_rgb_d_event(model):
        graphdef, state = nnx.split(model)
        f = jax.grad(lambda s, e: jnp.sum(jnp.sin(3 * nnx.merge(graphdef, s)(x_rgb, e)[0])), argnums=1)
        return jax.jit(f)(state, x_event)

    assert float(jnp.abs(d_rgb_d_event(_pair("autodiff"))).max()) > 1e-4  # the fusion couples them
    np.testing.assert_array_equal(np.asarray(d_rgb_d_event(_pair("authors"))), 0.0)
    # a modality's own B / C still train its x_proj
    _, grads = _grads("authors")
    assert float(jnp.abs(grads.blocks["rgb"].x_proj.kernel[...]).max()) > 0


def test_authors_D_gets_no_gradient():
    auto, authors = _grads("autodiff")[1], _grads("authors")[1]
    for m in ("rgb", "event"):
        for name in ("D", "D_b"):
            assert float(jnp.abs(getattr(auto.blocks[m], name)[...]).max()) > 0
            np.testing.assert_array_equal(np.asarray(getattr(authors.blocks[m], name)[...]), 0.0)


def test_authors_one_A_for_both_modalities_and_the_forward_dt_bias():
    _, grads = _grads("authors")
    for name in ("A_log", "A_b_log"):
        assert float(jnp.abs(getattr(grads.blocks["rgb"], name)[...]).max()) > 0
        np.testing.assert_array_equal(np.asarray(getattr(grads.blocks["event"], name)[...]), 0.0)
    for m in ("rgb", "event"):  # the backward scan reads dt_proj.bias, so dt_proj_b.bias is unused
        np.testing.assert_array_equal(np.asarray(grads.blocks[m].dt_proj_b.bias[...]), 0.0)


def test_unknown_grad_is_a_one_line_error():
    with pytest.raises(ValueError, match="MJOS grad must be one of"):
        mco_mamba.MCOMamba(4, grad="manual", rngs=nnx.Rngs(0))
