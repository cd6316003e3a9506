"""Test helpers for the golden parity checks: rebuild the golden weights, run the real converter CLI.

``convert_golden(arch, workdir)`` regenerates the state dict that ``make_goldens.py`` gave torchvision
(``golden_weights``, numpy only), writes it as ``.safetensors``, converts it with
``python -m fer_jax.convert``'s ``main`` and returns the output directory and the golden arrays.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from golden_weights import fingerprint, make_images, make_state_dict
from safetensors.numpy import save_file

from fer_jax.convert.__main__ import main as convert_main

GOLDEN_DIR = Path(__file__).parent
TOLERANCE = 1e-4  # max abs difference allowed against torchvision, float32


def load_golden(arch: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN_DIR / f"{arch}.npz") as g:
        return {k: g[k] for k in g.files}


def manifest(golden: dict[str, np.ndarray]) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(s)) for k, s in json.loads(str(golden["manifest"]))]


def torch_manifest(arch: str) -> list[tuple[str, tuple[int, ...]]]:
    """torchvision's state-dict (key, shape) list: from the golden, or a manifest-only JSON (M / L)."""
    json_path = GOLDEN_DIR / f"{arch}_manifest.json"
    if json_path.exists():
        return [(k, tuple(s)) for k, s in json.loads(json_path.read_text())]
    return manifest(load_golden(arch))


def checked_state_dict(
    sd: dict[str, np.ndarray], golden: dict[str, np.ndarray], script: str
) -> dict[str, np.ndarray]:
    """``sd`` after checking that its seeded numpy draws are the ones the golden was made with: a different
    numpy RNG stream would fail every comparison for a reason that is not a port bug."""
    np.testing.assert_allclose(
        fingerprint(list(sd.values())),
        golden["weights_fingerprint"],
        rtol=1e-9,
        err_msg=f"numpy draws differ from the golden's (numpy RNG changed?); rerun {script}",
    )
    return sd


def golden_state_dict(golden: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return checked_state_dict(make_state_dict(manifest(golden)), golden, "make_goldens.py")


def golden_images(golden: dict[str, np.ndarray], size: int, n: int = 2) -> np.ndarray:
    x = make_images(n, size)
    np.testing.assert_allclose(fingerprint([x]), golden[f"images_fingerprint_{size}"], rtol=1e-9)
    return x


def convert_golden(arch: str, workdir: Path, *, in_channels: int = 3) -> tuple[Path, dict[str, np.ndarray]]:
    golden = load_golden(arch)
    weights = workdir / f"{arch}.safetensors"
    save_file(golden_state_dict(golden), str(weights))
    out = workdir / f"{arch}_converted_{in_channels}"
    rc = convert_main(
        ["--arch", arch, "--weights", str(weights), "--out", str(out), "--in-channels", str(in_channels)]
    )
    assert rc == 0
    return out, golden
