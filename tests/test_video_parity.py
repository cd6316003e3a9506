"""Golden parity of the video baselines: R(2+1)D-18 and R3D-18 against torchvision, Hara's 3D ResNet-18 and
Former-DFER against their authors' PyTorch modules, each with seeded weights (``tests/golden/make_video_goldens.py``) converted in memory by
``fer_jax.convert.convert_state_dict`` (the CLI's orbax round trip is tested in test_baselines.py), compared at 1e-4 (logits, pooled features; torchvision's
also in train mode, with the BatchNorm running statistics afterwards)."""

from __future__ import annotations

import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

sys.path.insert(0, str(Path(__file__).parent / "golden"))
from golden_weights import fingerprint, make_clips  # noqa: E402
from parity import TOLERANCE, golden_state_dict, load_golden  # noqa: E402

from fer_jax.convert import convert_state_dict  # noqa: E402
from fer_jax.convert.tables import key_table  # noqa: E402


def _converted(arch: str) -> tuple[nnx.Module, dict, np.ndarray]:
    golden = load_golden(arch)
    model = convert_state_dict(arch, golden_state_dict(golden))
    n, t, s = (int(v) for v in golden["clip_shape"][:3])
    clips = make_clips(n, t, s)
    np.testing.assert_allclose(fingerprint([clips]), golden["clips_fingerprint"], rtol=1e-9)
    return model, golden, clips


@nnx.jit
def _video_resnet(model, x):
    pooled = jnp.mean(model.features(x), axis=(1, 2, 3))  # one pass: train mode moves the statistics once
    return pooled, model.fc(pooled)


# r3d_18 shares every code path but its stem with the other two 3D ResNets: slow suite only
@pytest.mark.parametrize(
    "arch", ["resnet3d_18", "r2plus1d_18", pytest.param("r3d_18", marks=pytest.mark.slow)]
)
def test_video_resnet_matches_the_reference(arch):
    model, golden, clips = _converted(arch)
    assert model.num_classes == (700 if arch == "resnet3d_18" else 400)
    model.eval()
    pooled, logits = _video_resnet(model, jnp.asarray(clips))
    np.testing.assert_allclose(np.asarray(pooled), golden["pooled"], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(np.asarray(logits), golden["logits"], atol=TOLERANCE, rtol=0)
    # train mode: batch statistics normalise, running statistics move as torch's do (one forward)
    model.train()
    pooled, _ = _video_resnet(model, jnp.asarray(clips))
    np.testing.assert_allclose(np.asarray(pooled), golden["train_pooled"], atol=TOLERANCE, rtol=0)
    checked = 0
    for entry in key_table(arch, model):
        key = f"bn/{entry.torch_key}"
        if key in golden:
            node = model
            for part in entry.nnx_path:
                node = node[part] if isinstance(part, int) else getattr(node, part)
            np.testing.assert_allclose(np.asarray(node[...])[:8], golden[key], atol=TOLERANCE, err_msg=key)
            checked += 1
    assert checked == 2 * sum(1 for k in golden if k.startswith("bn/") and k.endswith("running_mean"))


@nnx.jit
def _former(model, x):
    b, t = x.shape[:2]
    pooled = model.s_former(x.reshape(b * t, *x.shape[2:]))
    return pooled, model.fc(model.t_former(pooled.reshape(b, t, -1)))


def test_former_dfer_matches_the_authors_module():
    model, golden, clips = _converted("former_dfer")
    model.eval()
    pooled, logits = _former(model, jnp.asarray(clips))
    np.testing.assert_allclose(np.asarray(pooled), golden["pooled"], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(np.asarray(logits), golden["logits"], atol=TOLERANCE, rtol=0)
    # the whole model as the registry builds it gives the same logits
    np.testing.assert_allclose(np.asarray(nnx.jit(lambda m, x: m(x))(model, clips)), golden["logits"],
                               atol=TOLERANCE, rtol=0)  # fmt: skip
