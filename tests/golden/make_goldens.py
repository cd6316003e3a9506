"""DEV-ONLY: writes the torchvision golden outputs that tests/test_{resnet,efficientnet_v2,convert}.py check.

Needs torch + torchvision (not a project dependency), e.g.

    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy safetensors
    /tmp/tv/bin/python tests/golden/make_goldens.py            # writes tests/golden/<arch>.npz

For each arch: torchvision's model with every weight from ``golden_weights.weight_for`` (seeded numpy),
eval mode, float32, on ``make_images(2, size)`` at 112 and 224: the logits and the pooled features
(``avgpool`` output). Then one train-mode forward at 112 (stochastic depth 0 for EfficientNet so the
forward is deterministic): the pooled features and the BatchNorm running statistics afterwards (all
channels for ResNet, the first 8 channels of each BN for EfficientNet to keep the file small).
The state-dict manifest (keys, shapes) is stored too, so the tests rebuild the same state dict without torch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).parent))
from golden_weights import fingerprint, make_images, make_state_dict  # noqa: E402

OUT = Path(__file__).parent
N_IMAGES = 2
BN_CHANNELS = {"resnet18": None, "resnet34": None, "efficientnet_v2_s": 8}
SIZES = {"resnet18": (112, 224), "resnet34": (112,), "efficientnet_v2_s": (112, 224)}


def build(arch: str, **kwargs) -> torch.nn.Module:
    model = getattr(torchvision.models, arch)(weights=None, **kwargs)
    manifest = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    sd = {k: torch.from_numpy(v) for k, v in make_state_dict(manifest).items()}
    model.load_state_dict(sd, strict=True)
    return model, manifest


def pooled_and_logits(model: torch.nn.Module, x_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    captured = {}

    def hook_fn(module, inputs, output) -> None:
        # a copy, and return None: a hook's return value replaces the module's output, and EfficientNet's
        # classifier Dropout(inplace=True) would then overwrite what we captured
        captured["p"] = output.flatten(1).clone()

    hook = model.avgpool.register_forward_hook(hook_fn)
    with torch.no_grad():
        logits = model(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).contiguous())
    hook.remove()
    return captured["p"].numpy(), logits.numpy()


def main() -> None:
    torch.set_num_threads(2)
    for arch in ("resnet18", "resnet34", "efficientnet_v2_s"):
        model, manifest = build(arch)
        model.eval()
        out: dict[str, np.ndarray] = {
            "manifest": np.array(json.dumps(manifest)),
            "weights_fingerprint": fingerprint(list(make_state_dict(manifest).values())),
        }
        for size in SIZES[arch]:
            x = make_images(N_IMAGES, size)
            out[f"images_fingerprint_{size}"] = fingerprint([x])
            out[f"pooled_{size}"], out[f"logits_{size}"] = pooled_and_logits(model, x)
            print(
                arch,
                size,
                "logits std",
                out[f"logits_{size}"].std(),
                "pooled std",
                out[f"pooled_{size}"].std(),
            )
        kwargs = {"stochastic_depth_prob": 0.0} if arch.startswith("efficientnet") else {}
        model, _ = build(arch, **kwargs)
        model.train()
        out["train_pooled_112"], _ = pooled_and_logits(model, make_images(N_IMAGES, 112))
        k = BN_CHANNELS[arch]
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                out[f"bn/{name}.running_mean"] = module.running_mean.numpy()[:k].copy()
                out[f"bn/{name}.running_var"] = module.running_var.numpy()[:k].copy()
        np.savez_compressed(OUT / f"{arch}.npz", **out)
        print("wrote", OUT / f"{arch}.npz", f"{(OUT / f'{arch}.npz').stat().st_size / 1e3:.0f} kB")
    print("torch", torch.__version__, "torchvision", torchvision.__version__)


if __name__ == "__main__":
    main()
