"""DEV-ONLY: writes the video goldens that tests/test_video_parity.py checks (r2plus1d_18, r3d_18,
resnet3d_18, former_dfer).

Needs torch + torchvision + einops (not project dependencies) and two authors' code: Hara et al.'s
(kenshohara/3D-ResNets-PyTorch, ``models/resnet.py``) and Former-DFER's (zengqunzhao/Former-DFER,
``models/``), e.g.

    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch torchvision numpy safetensors einops
    git clone https://github.com/kenshohara/3D-ResNets-PyTorch /tmp/hara
    git clone https://github.com/zengqunzhao/Former-DFER /tmp/Former-DFER
    /tmp/tv/bin/python tests/golden/make_video_goldens.py --hara /tmp/hara --former-dfer /tmp/Former-DFER

Hara's network is his ``generate_model(18, n_classes=700)`` with its defaults (7x7x7 stem, max-pool,
shortcut "B"), the configuration of his released ``r3d18_K_200ep.pth``.

For each model: the reference with every weight from ``golden_weights.weight_for`` (seeded numpy), eval
mode, float32: the logits and the pooled features on ``make_clips``; for the torchvision models also one
train-mode forward (pooled features and the first 8 channels of every BatchNorm's running statistics
afterwards). Clips: 2 x 4 x 48 x 48 for torchvision's models (every stride still acts: layer4 is 1 x 3 x 3),
2 x 8 x 48 x 48 for Hara's (his max-pool halves time too);
1 x 16 x 112 x 112 for Former-DFER, whose code fixes 16 frames of 112 px (``view(-1, 3, 112, 112)``).
The state-dict manifest (keys, shapes) is stored too, so the tests rebuild the same state dict without torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from golden_weights import fingerprint, make_clips, make_state_dict  # noqa: E402

OUT = Path(__file__).parent
BN_CHANNELS = 8
CLIPS = {
    "r2plus1d_18": (2, 4, 48),
    "r3d_18": (2, 4, 48),
    "resnet3d_18": (2, 8, 48),
    "former_dfer": (1, 16, 112),
}


def torchvision_video():
    """``torchvision.models.video.resnet``; where torchvision's C extension does not load (a CPU-only torch
    beside a CUDA torchvision wheel) the module is imported without running ``torchvision/__init__``."""
    try:
        import torchvision

        return torchvision.models.video.resnet
    except (ImportError, RuntimeError):
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        spec = importlib.util.find_spec("torchvision")
        package = types.ModuleType("torchvision")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["torchvision"] = package
        from torchvision.models.video import resnet

        return resnet


def hara_resnet18(src: Path):
    """Hara's ``generate_model(18, n_classes=700)`` from his ``models/resnet.py``."""
    spec = importlib.util.spec_from_file_location("hara_resnet", src / "models" / "resnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return lambda: module.generate_model(18, n_classes=700)


def former_dfer_module(src: Path):
    """The authors' ``GenerateModel`` class from their ``models/ST_Former.py``."""
    sys.path.insert(0, str(src))
    from models.ST_Former import GenerateModel

    return GenerateModel


def seeded(model: torch.nn.Module) -> tuple[torch.nn.Module, list]:
    manifest = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    sd = {k: torch.from_numpy(v) for k, v in make_state_dict(manifest).items()}
    model.load_state_dict(sd, strict=True)
    return model, manifest


def forward(model: torch.nn.Module, pool: torch.nn.Module, x: np.ndarray, *, former: bool):
    captured = {}

    def hook_fn(module, inputs, output) -> None:
        captured["p"] = output.flatten(1).clone()

    hook = pool.register_forward_hook(hook_fn)
    # NTHWC -> the reference's layout: torchvision (N, C, T, H, W), Former-DFER (N, T, C, H, W)
    t = torch.from_numpy(x).permute(0, 1, 4, 2, 3) if former else torch.from_numpy(x).permute(0, 4, 1, 2, 3)
    with torch.no_grad():
        logits = model(t.contiguous())
    hook.remove()
    return captured["p"].numpy(), logits.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hara", required=True, type=Path, help="checkout of kenshohara/3D-ResNets-PyTorch")
    parser.add_argument("--former-dfer", required=True, type=Path, help="checkout of zengqunzhao/Former-DFER")
    args = parser.parse_args()
    torch.set_num_threads(2)
    video = torchvision_video()
    builders = {
        "r2plus1d_18": lambda: video.r2plus1d_18(weights=None),
        "r3d_18": lambda: video.r3d_18(weights=None),
        "resnet3d_18": hara_resnet18(args.hara),
        "former_dfer": former_dfer_module(args.former_dfer),
    }
    for arch, build in builders.items():
        former = arch == "former_dfer"
        model, manifest = seeded(build())
        model.eval()
        n, t, s = CLIPS[arch]
        x = make_clips(n, t, s)
        out: dict[str, np.ndarray] = {
            "manifest": np.array(json.dumps(manifest)),
            "weights_fingerprint": fingerprint(list(make_state_dict(manifest).values())),
            "clips_fingerprint": fingerprint([x]),
            "clip_shape": np.array(x.shape),
        }
        pool = model.s_former.avgpool if former else model.avgpool
        out["pooled"], out["logits"] = forward(model, pool, x, former=former)
        if not former:
            model, _ = seeded(build())
            model.train()
            out["train_pooled"], _ = forward(model, model.avgpool, x, former=False)
            for name, module in model.named_modules():
                if isinstance(module, torch.nn.BatchNorm3d):
                    out[f"bn/{name}.running_mean"] = module.running_mean.numpy()[:BN_CHANNELS].copy()
                    out[f"bn/{name}.running_var"] = module.running_var.numpy()[:BN_CHANNELS].copy()
        np.savez_compressed(OUT / f"{arch}.npz", **out)
        size = (OUT / f"{arch}.npz").stat().st_size / 1e3
        print(arch, "logits std", out["logits"].std(), "pooled std", out["pooled"].std(), f"{size:.0f} kB")
    print("torch", torch.__version__)


if __name__ == "__main__":
    main()
