"""GMACs per clip (XLA cost analysis of the jitted eval forward, flops / 2) and parameter counts.

    python -m benchmarks.flops                       # dfew, the baselines, see (when present)
    python -m benchmarks.flops --configs configs/dfew.py configs/see.py

For MambaFER the backbone / CBAM / temporal split is measured by costing the backbone alone and
``features`` (backbone + CBAM), the rest by difference. The paper reports 15.2 G for its model.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

PAPER_GFLOPS = {"mambafer": 15.2}
DEFAULT = [
    "configs/dfew.py",
    "configs/dfew_resnet18_lstm.py",
    "configs/dfew_resnet18_gru.py",
    "configs/see.py",
]


def _load(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


def _gmacs(fn, *args) -> float:
    import jax

    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0)) / 2e9


def measure(config) -> dict:
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

    row = {"name": config.model.name, "params_m": params / 1e6, "gmacs": _gmacs(fwd, state, inputs)}
    if config.model.name == "mambafer":
        f, lm = inputs["frames"], inputs["landmarks"]

        def backbone(st, x):
            m = nnx.merge(graphdef, st)
            return m.backbone(x.reshape(-1, *x.shape[2:]))

        def features(st, x, y):
            return nnx.merge(graphdef, st).features(x, y)["cbam"]

        b = _gmacs(backbone, state, f)
        fc = _gmacs(features, state, f, lm)
        row.update(backbone=b, cbam=fc - b, temporal=row["gmacs"] - fc)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs", nargs="+", default=None, help="config files (default: dfew, baselines, see)"
    )
    args = parser.parse_args(argv)
    paths = args.configs or [p for p in DEFAULT if Path(p).exists()]
    for p in paths:
        if not Path(p).exists():
            print(f"error: no config file {p}", file=sys.stderr)
            return 2
    print("| config | model | params (M) | GMACs / clip | backbone | CBAM | temporal | paper (G) |")
    print("|---|---|---|---|---|---|---|---|")
    for p in paths:
        r = measure(_load(p))
        parts = [f"{r[k]:.3f}" if k in r else "" for k in ("backbone", "cbam", "temporal")]
        paper = PAPER_GFLOPS.get(r["name"], "")
        print(
            f"| {p} | {r['name']} | {r['params_m']:.2f} | {r['gmacs']:.3f} | {' | '.join(parts)} | {paper} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
