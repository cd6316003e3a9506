"""DEV-ONLY: runs the authors' MCO-E Net (hrdhrd/MCO-E-Net) on CPU and writes
``tests/golden/mco_e_net_reference.npz``, which ``tests/test_convert_mco.py`` checks fer_jax against.

Their code at commit ``a980446cda59309ca040c88b286abd11f07d5c20`` (2025-09-22), ``code/`` folder::

    git -C <their clone> archive a980446 code | tar -x -C /tmp/mco_src
    python3 -m venv /tmp/mco_torch && /tmp/mco_torch/bin/pip install torch torchvision numpy einops safetensors
    /tmp/mco_torch/bin/python tests/golden/make_mco_goldens.py --code /tmp/mco_src/code

Their code has no CPU path; these shims of ours stand in for what it cannot run here (nothing else of
theirs is changed):

- ``selective_scan_cuda.fwd``: their own pure-torch ``selective_scan_ref`` from ``BC.py`` (which handles
  the ``(B, 1, N, L)`` B and C that ``MambaInnerFnNoOutProj`` passes);
- ``causal_conv1d_cuda.causal_conv1d_fwd``: ``F.conv1d`` depthwise, left padding K-1, cut to L, SiLU;
- ``mamba_ssm.ops.selective_scan_interface`` = their ``BC.py`` (``MCOMamba.py`` imports the two-modality
  ``mamba_inner_fn_no_out_proj`` from there: their setup replaces mamba_ssm's file with ``BC.py``);
  ``causal_conv1d`` with ``None`` functions (their ``except ImportError`` assigns one ``None`` to two names);
- ``opts.parse_opts`` (theirs parses ``sys.argv`` at import) -> an empty namespace;
- ``ResNet.ResNet18FeatureExtractor``: theirs downloads ImageNet weights and moves to ``cuda:0``; ours is
  torchvision's ``resnet18(weights=None, num_classes=BACKBONE_CLASSES)`` under the same ``resnet.`` name;
- ``MCOE.forward`` is theirs with one edit, the hard-coded 500 tokens -> ``2 * BACKBONE_CLASSES / 4``
  (``__init__`` rebuilt with the same attributes at the small sizes of
  ``mco_e_net_reference_weights.SIZES``); and this torchvision wheel's missing C ops (``nms``) are
  skipped by a no-op ``torch.library.register_fake`` while it imports.

Stored: the state-dict manifest (key, shape) and a fingerprint of the numpy draws (weights are redrawn
from the seed by the test), the inputs, logits (eval mode) and intermediates: ``tokens_rgb`` /
``tokens_event`` (the ResNet logits as tokens), ``mamba_rgb`` / ``mamba_event`` (MCO output + tokens),
``fused`` (MCIB), ``neck`` (fusion_proj), ``router_probs`` (softmax of the router logits).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from golden_weights import fingerprint  # noqa: E402
from mco_e_net_reference_weights import BACKBONE_CLASSES, NECK_DIM, make_inputs, make_state_dict  # noqa: E402

COMMIT = "a980446cda59309ca040c88b286abd11f07d5c20"
OUT = Path(__file__).parent / "mco_e_net_reference.npz"


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def _load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def install_shims(code: Path) -> types.ModuleType:
    """The shims of the module docstring; returns their ``mamba_fusion`` module."""
    register_fake = torch.library.register_fake
    torch.library.register_fake = lambda *a, **k: lambda f: f
    import torchvision

    torch.library.register_fake = register_fake

    holder: dict = {}

    def scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        ref = holder["bc"].selective_scan_ref
        out = ref(u, delta, A, B, C, D, None, delta_bias, delta_softplus)
        out_z = ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        return out, None, out_z

    def conv_fwd(x, weight, bias, _initial, silu):
        k = weight.shape[-1]
        y = F.conv1d(x, weight.unsqueeze(1), bias, padding=k - 1, groups=x.shape[1])[..., : x.shape[-1]]
        return F.silu(y) if silu else y

    _module("selective_scan_cuda", fwd=scan_fwd)
    _module("causal_conv1d_cuda", causal_conv1d_fwd=conv_fwd)
    _module("causal_conv1d", causal_conv1d_fn=None, causal_conv1d_update=None)
    _module("opts", parse_opts=lambda: argparse.Namespace())

    class ResNet18FeatureExtractor(nn.Module):
        def __init__(self, pretrained=True):
            super().__init__()
            self.resnet = torchvision.models.resnet18(weights=None, num_classes=BACKBONE_CLASSES)

        def forward(self, x):
            return self.resnet(x)

    _module("ResNet", ResNet18FeatureExtractor=ResNet18FeatureExtractor)
    holder["bc"] = _load_file("BC", code / "BC.py")
    _module("mamba_ssm")
    _module("mamba_ssm.ops")
    sys.modules["mamba_ssm.ops.selective_scan_interface"] = holder["bc"]
    sys.path.insert(0, str(code))
    return _load_file("mamba_fusion", code / "mamba_fusion.py")


def small_mcoe(mf: types.ModuleType) -> nn.Module:
    """Their ``MCOE`` at the golden's sizes: the same attributes, their forward with the token count."""
    tokens = 2 * BACKBONE_CLASSES // 4
    src = textwrap.dedent(inspect.getsource(mf.MCOE.forward))
    assert src.count("500, 4") == 2, "their MCOE.forward changed: review the token-count edit"
    namespace: dict = {}
    exec(src.replace("500, 4", f"{tokens}, 4"), vars(mf), namespace)

    class SmallMCOE(mf.MCOE):
        def __init__(self):
            nn.Module.__init__(self)
            self.res00 = mf.ResNet18FeatureExtractor()
            self.res01 = mf.ResNet18FeatureExtractor()
            self.res10 = mf.ResNet18FeatureExtractor()
            self.res11 = mf.ResNet18FeatureExtractor()
            self.MCO = mf.CrossMamba(4)
            self.MCIB = mf.MCIB()
            self.moe = mf.HCEMoE(input_dim=NECK_DIM, output_dim=7, num_experts=8, top_k=2)
            self.dropout = nn.Dropout(p=0.7)
            self.glu = nn.GLU(dim=-1)
            self.fusion_proj = nn.Sequential(nn.Linear(tokens * 4, NECK_DIM), nn.GELU(), nn.Dropout(0.5))
            self.output = nn.Linear(1000, 7)

        forward = namespace["forward"]

    return SmallMCOE()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--code", required=True, type=Path, help=f"their code/ folder at {COMMIT[:7]}")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.manual_seed(0)
    mf = install_shims(args.code.absolute())
    model = small_mcoe(mf)
    sd_torch = model.state_dict()
    manifest = [(k, tuple(v.shape)) for k, v in sd_torch.items()]
    sd = make_state_dict(manifest)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    mamba = model.MCO.cross_matrix_mamba
    assert mamba.A_log_rgb.data_ptr() == mamba.A_log_event.data_ptr(), "A_log pair no longer aliased"
    model.eval()

    seen: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(_module, inputs, output):
            seen[name] = output
            if name == "MCO":
                seen["mco_inputs"] = inputs

        return hook

    for name in ("MCO", "MCIB", "fusion_proj"):
        getattr(model, name).register_forward_hook(keep(name))
    model.moe.router.register_forward_hook(keep("router"))
    x = make_inputs()
    # fer_jax (B, T, H, W, C) -> theirs (B, C, T, H, W)
    frame, event = (torch.from_numpy(x[k]).permute(0, 4, 1, 2, 3).contiguous() for k in ("rgb", "event"))
    with torch.no_grad():
        logits = model(frame, event)
    tok_rgb, tok_event = seen["mco_inputs"]
    mco_rgb, mco_event = seen["MCO"]
    arrays = {
        "logits": logits,
        "tokens_rgb": tok_rgb,
        "tokens_event": tok_event,
        "mamba_rgb": mco_rgb + tok_rgb,  # their forward adds the tokens after the block
        "mamba_event": mco_event + tok_event,
        "fused": seen["MCIB"],
        "neck": seen["fusion_proj"],
        "router_probs": torch.softmax(seen["router"], dim=-1),
    }
    out = {k: v.detach().numpy().astype(np.float32) for k, v in arrays.items()}
    out.update(x)
    out["manifest"] = np.array(json.dumps(manifest))
    out["weights_fingerprint"] = fingerprint(list(sd.values()))
    out["commit"] = np.array(COMMIT)
    np.savez_compressed(args.out, **out)
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB); logits {out['logits'].round(4).tolist()}"
    )


if __name__ == "__main__":
    main()
