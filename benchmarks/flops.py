"""GMACs per clip of paper 1's Table 2 rows (and any config), beside the paper's FLOPs column.

    python -m benchmarks.flops                       # every Table 2 row at 16 x 112 x 112, MambaFER also at 128
    python -m benchmarks.flops --configs configs/dfew.py configs/see.py --size 0   # at each config's own size

Two counts per row:
- ``GMACs``: multiply-accumulates of every convolution and matrix product in the jitted eval forward,
  read from its jaxpr (``count_macs``): output elements x kernel taps x input channels per group,
  padding taps included. This is the convention of the counters papers quote (thop, ptflops, fvcore;
  torchvision's published GFLOPS), and the one paper 1's column follows (its "FLOPs (G)" are GMACs:
  Hara's 3D ResNet-18 is 8.30 GMACs, the paper says 8.32 G).
- ``XLA``: XLA's cost analysis of the compiled forward (flops / 2), which counts only taps that land
  inside the input: smaller wherever a map is small against its kernel (3D ResNet-18: 6.7 vs 8.3).

For MambaFER the backbone / CBAM / temporal split is counted by costing the backbone alone and
``features`` (backbone + CBAM), the rest by difference. Paper 1's 15.2 G for MambaFER matches 16 frames at
128 px (see docs/design_decisions.md and configs/dfew.py), the other rows their authors' 112 px.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path

# Table 2 of paper 1, FLOPs (G) column, by registry model name
PAPER_GFLOPS = {
    "r2plus1d_18": 42.36,
    "resnet3d_18": 8.32,
    "resnet18_lstm": 7.78,
    "resnet18_gru": 7.78,
    "former_dfer": 9.11,
    "mambafer": 15.2,
}
# (config, image size) rows of the default table, in the paper's order; r3d_18 is no Table 2 row
DEFAULT = [
    ("configs/dfew_r2plus1d_18.py", 112),
    ("configs/dfew_resnet3d_18.py", 112),
    ("configs/dfew_resnet18_lstm.py", 112),
    ("configs/dfew_resnet18_gru.py", 112),
    ("configs/dfew_former_dfer.py", 112),
    ("configs/dfew.py", 112),
    ("configs/dfew.py", 128),
    ("configs/dfew_r3d_18.py", 112),
]
HYBRID_NOTE = "R(2+1)D ResNet18 Hybrid [15] (paper: 47 G): not built, see docs/ablations.md"


def _load(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


def _eqn_macs(eqn) -> float:
    """MACs of one jaxpr equation: convolutions and dot products; everything else counts 0."""
    name = eqn.primitive.name
    if name == "conv_general_dilated":
        out, kernel = eqn.outvars[0].aval, eqn.invars[1].aval
        out_channels = kernel.shape[eqn.params["dimension_numbers"].rhs_spec[0]]
        # each output element: kernel taps x (input channels / groups) MACs; kernel.size / out_channels
        return out.size * kernel.size / out_channels
    if name == "dot_general":
        (contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval
        return eqn.outvars[0].aval.size * math.prod(lhs.shape[d] for d in contract)
    return 0.0


def _jaxpr_macs(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
        total += _eqn_macs(eqn)
        repeat = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                inner = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                if hasattr(inner, "eqns"):
                    total += repeat * _jaxpr_macs(inner)
    return total


def count_macs(fn, *args) -> float:
    """GMACs of ``fn(*args)`` (abstract args are fine): convolutions (padding taps included) and matrix
    products, sub-computations (jit, remat, custom derivatives) included and scan bodies times their
    length; while loops count once (their trip count is not static)."""
    import jax

    return _jaxpr_macs(jax.make_jaxpr(fn)(*args).jaxpr) / 1e9


def _xla_gmacs(fn, *args) -> float:
    import jax

    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0)) / 2e9


def measure(config, *, xla: bool = True, split: bool = True) -> dict:
    """``{"name", "size", "params_m", "gmacs", "xla"}`` (+ MambaFER's ``backbone`` / ``cbam`` /
    ``temporal`` GMACs with ``split``) for one clip of ``config``'s frames and size."""
    import jax
    from flax import nnx

    from fer_jax.models import registry

    model = nnx.eval_shape(lambda: registry.build(config, rngs=nnx.Rngs(0)))
    model.eval()
    graphdef, state = nnx.split(model)
    inputs = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in registry.dummy_inputs(config, 1).items()}
    params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))

    def fwd(st, inp):
        return nnx.merge(graphdef, st)(**inp)["logits"]

    row = {
        "name": config.model.name,
        "size": int(config.data.image_size),
        "params_m": params / 1e6,
        "gmacs": count_macs(fwd, state, inputs),
        "xla": _xla_gmacs(fwd, state, inputs) if xla else float("nan"),
    }
    if split and config.model.name == "mambafer":
        f, lm = inputs["frames"], inputs["landmarks"]

        def backbone(st, x):
            return nnx.merge(graphdef, st).backbone(x.reshape(-1, *x.shape[2:]))

        def features(st, x, y):
            return nnx.merge(graphdef, st).features(x, y)["cbam"]

        b = count_macs(backbone, state, f)
        fc = count_macs(features, state, f, lm)
        row.update(backbone=b, cbam=fc - b, temporal=row["gmacs"] - fc)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=None, help="config files (default: the Table 2 rows)")
    parser.add_argument(
        "--size", type=int, default=112, help="image size for --configs (0: each config's own; default 112)"
    )
    parser.add_argument("--no-xla", action="store_true", help="skip XLA's cost analysis (no compilation)")
    args = parser.parse_args(argv)
    rows = [(p, args.size or None) for p in args.configs] if args.configs else DEFAULT
    for p, _ in rows:
        if not Path(p).exists():
            print(f"error: no config file {p}", file=sys.stderr)
            return 2
    print(
        "| config | model | frames x size | params (M) | GMACs | XLA GMACs | backbone | CBAM | temporal | paper (G) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p, size in rows:
        config = _load(p)
        if size:
            config.data.image_size = size
        r = measure(config, xla=not args.no_xla)
        parts = [f"{r[k]:.3f}" if k in r else "" for k in ("backbone", "cbam", "temporal")]
        paper = PAPER_GFLOPS.get(r["name"], "")
        clip = f"{config.data.num_frames} x {r['size']}"
        print(
            f"| {p} | {r['name']} | {clip} | {r['params_m']:.2f} | {r['gmacs']:.2f} | {r['xla']:.2f} | "
            f"{' | '.join(parts)} | {paper} |"
        )
    if not args.configs:
        print(HYBRID_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
