"""CLI: convert a torchvision state dict into an orbax checkpoint of the fer_jax port.

    python -m fer_jax.convert --arch {resnet18,resnet34,efficientnet_v2_s,_m,_l} --weights FILE --out DIR \\
        [--in-channels N]

FILE is ``.safetensors`` (no torch needed) or ``.pth`` (needs torch; loaded with ``weights_only=True``).
Exit code 2 with a one-line reason on bad input (unknown arch, unreadable / truncated file, a state dict of
another architecture, existing output).
"""

from __future__ import annotations

import argparse
import sys

from fer_jax.cli import EXIT_USAGE, one_line
from fer_jax.convert import ARCHS, ConversionError, convert_state_dict, read_state_dict, save_converted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fer_jax.convert",
        description="Convert torchvision weights (.safetensors or .pth) into a fer_jax orbax checkpoint.",
        epilog="--in-channels N != 3 adapts the first conv: mean of the RGB filters, tiled to N, times 3/N.",
    )
    parser.add_argument("--arch", required=True, choices=sorted(ARCHS), help="torchvision architecture")
    parser.add_argument("--weights", required=True, help="torchvision state dict (.safetensors or .pth)")
    parser.add_argument("--out", required=True, help="output directory (gets state/ and meta.json)")
    parser.add_argument("--in-channels", type=int, default=3, help="input channels of the port (default 3)")
    args = parser.parse_args(argv)
    try:
        state_dict = read_state_dict(args.weights)
        model = convert_state_dict(args.arch, state_dict, in_channels=args.in_channels)
        out = save_converted(model, args.out, arch=args.arch, source=str(args.weights))
    except (ConversionError, OSError) as exc:
        # the whole message on one line: a mismatch lists several parameters
        print(f"error: {one_line(' '.join(str(exc).split()))}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {args.arch} (in_channels={args.in_channels}, num_classes={model.num_classes}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
