"""CLI: convert a torchvision state dict into an orbax checkpoint of the fer_jax port.

    python -m fer_jax.convert --arch {resnet18,resnet34,efficientnet_v2_s,_m,_l} --weights FILE --out DIR \\
        [--in-channels N]

FILE is ``.safetensors`` (no torch needed) or ``.pth`` (needs torch; loaded with ``weights_only=True``).
Exit code 2 with a one-line reason on bad input (unknown arch, unreadable / truncated file, a state dict of
another architecture, existing output).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from fer_jax.cli import EXIT_FAILURE, EXIT_USAGE, Parser, check_output_dir, interrupted, one_line
from fer_jax.convert import (
    ARCHS,
    MCO_ARCH,
    META_FILE,
    STATE_DIR,
    ConversionError,
    convert_state_dict,
    read_state_dict,
    save_converted,
)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m fer_jax.convert",
        description="Convert torchvision weights (.safetensors or .pth) into a fer_jax orbax checkpoint.",
        epilog="--in-channels N != 3 adapts the first conv: mean of the RGB filters, tiled to N, times 3/N.",
    )
    parser.add_argument(
        "--arch",
        required=True,
        choices=sorted((*ARCHS, MCO_ARCH)),
        help=f"torchvision architecture, or {MCO_ARCH} (the authors' whole MCO-E Net state dict)",
    )
    parser.add_argument("--weights", required=True, help="torchvision state dict (.safetensors or .pth)")
    parser.add_argument("--out", required=True, help="output directory (gets state/ and meta.json)")
    parser.add_argument("--in-channels", type=int, default=3, help="input channels of the port (default 3)")
    args = parser.parse_args(argv)
    out_path = Path(args.out)
    try:  # before the weights are read: a file in the way is refused at once
        check_output_dir(out_path)
    except ValueError as e:
        parser.exit(EXIT_USAGE, f"error: {e}\n")
    # what this run may remove again if it stops half-way: only what did not exist before it
    had = {"out": out_path.exists(), "state": (out_path / STATE_DIR).exists(),
           "meta": (out_path / META_FILE).exists()}  # fmt: skip
    try:
        state_dict = read_state_dict(args.weights)
        if args.arch == MCO_ARCH:
            return _convert_mco(state_dict, args)
        model = convert_state_dict(args.arch, state_dict, in_channels=args.in_channels)
        out = save_converted(model, args.out, arch=args.arch, source=str(args.weights))
    except KeyboardInterrupt:
        _remove_partial(out_path, had)
        return interrupted("while converting: no partial output was left")
    except (ConversionError, OSError) as exc:
        _remove_partial(out_path, had)
        # the whole message on one line: a mismatch lists several parameters
        print(f"error: {one_line(' '.join(str(exc).split()))}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 (an unforeseen failure: one line, not a traceback)
        _remove_partial(out_path, had)
        print(f"error: {one_line(exc, with_type=True)}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"wrote {args.arch} (in_channels={args.in_channels}, num_classes={model.num_classes}) to {out}")
    return 0


def _convert_mco(state_dict, args) -> int:
    from fer_jax.convert import mco

    if args.in_channels != 3:
        raise ConversionError(f"--in-channels does not apply to {MCO_ARCH} (the file fixes its inputs)")
    model, cfg, skipped = mco.convert_state_dict(state_dict)
    extra = {"model": mco.settings_dict(cfg), "skipped": skipped}
    out = save_converted(model, args.out, arch=MCO_ARCH, source=str(args.weights), extra_meta=extra)
    print(f"skipped {len(skipped)} torch keys the official forward never reads: {', '.join(skipped)}")
    print(f"wrote {MCO_ARCH} (d_model={cfg.d_model}, {cfg.moe.num_experts} experts) to {out}")
    return 0


def _remove_partial(out: Path, had: dict[str, bool]) -> None:
    """Removes what a stopped conversion wrote (a ``state/`` without ``meta.json`` would block the next
    run and fail to load); never anything that existed before it."""
    if not had["state"]:
        shutil.rmtree(out / STATE_DIR, ignore_errors=True)
    if not had["meta"]:
        (out / META_FILE).unlink(missing_ok=True)
    if not had["out"] and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


if __name__ == "__main__":
    sys.exit(main())
