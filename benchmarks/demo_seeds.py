"""The demo's three trainings over seeds and XLA optimisation levels: mean +- std and minimum of each metric.

    python benchmarks/demo_seeds.py [--data runs/demo_seeds/data] [--work runs/demo_seeds/runs]
        [--seeds 0 1 2] [--opt default O1] [--runs mambafer mco_e_net mco_e_net_rgb] [--jobs 2]
        [--set RUN:KEY=VALUE ...] [--tag NAME] [--reuse EARLIER.json:RUN[,RUN]] [--out docs/bench/demo_seeds.md]

The data are the demo's own: ``scripts/demo.py``'s synthesize and build stages, run once into ``--data``
(reused when its shards exist). Each (run, seed, optimisation level) then runs the demo's commands,
``fer_jax.train`` with ``--config.seed=SEED`` and ``fer_jax.evaluate``, and its ``metrics.json`` is read as
the demo's report reads it. ``--opt O1`` adds ``--xla_backend_optimization_level=1`` to ``XLA_FLAGS``
(LLVM's float rounding differs from the default level: a recipe that passes only at one level sits on a
line). Finished runs are kept and skipped on a rerun, so an interrupted sweep resumes.

Written: ``--out`` (Markdown: per run the n, mean +- std, minimum and maximum of WAR, UAR and low-light
accuracy, the low-light gap of RGB + event over RGB only paired by seed and level, each demo target
against its minimum) and the same as JSON beside it (``.json``), which ``fer_jax.report --spread`` reads to
place one demo run within the documented spread. ``--set RUN:KEY=VALUE`` passes ``--config.KEY=VALUE`` to
that run's training (a recipe experiment; name it with ``--tag`` so its runs are kept apart).
``--reuse EARLIER.json:RUN`` takes RUN's results from an earlier JSON of this script instead of training
it again, for a run whose data and config have not changed since (the table names the file and its
command); every (seed, level) asked for must be in it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fer_jax.host import cpu_description  # noqa: E402

# run name -> (config, shard set): the three trainings of `make demo`
RUNS = {
    "mambafer": ("configs/demo_dfew.py", "dfew"),
    "mco_e_net": ("configs/demo_see.py", "see"),
    "mco_e_net_rgb": ("configs/demo_see_rgb.py", "see"),
}
OPT_FLAGS = {"default": "", "O1": "--xla_backend_optimization_level=1"}
# the demo's targets (scripts/demo.py report_argv): run -> (metric, threshold)
TARGETS = {"mambafer": ("uar", 0.80), "mco_e_net": ("uar", 0.85)}
GAP = ("mco_e_net", "mco_e_net_rgb", "low", 0.05)
METRICS = ("war", "uar", "low")


def build_data(data: Path, py: str) -> None:
    """The demo's synthesize + build stages into ``data`` (raw/ and shards/), unless its shards exist."""
    if (data / "shards/dfew").is_dir() and (data / "shards/see").is_dir():
        return
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    sys.modules["demo_script"] = demo  # its dataclasses look their module up
    spec.loader.exec_module(demo)
    settings = demo.Settings.from_env({**os.environ, "DEMO_DIR": str(data), "PY": py})
    for lane in demo.build_lanes(settings)[:2]:  # dfew, see: their synthesize and build stages
        for stage in lane.stages[:2]:
            print(f"[data] {stage.what}", flush=True)
            subprocess.run(list(stage.argv), cwd=ROOT, check=True, env=dict(settings.base_env))


def run_one(
    name: str, seed: int, opt: str, data: Path, workdir: Path, py: str, overrides: list[str]
) -> subprocess.Popen:
    """Starts train-then-evaluate for one combination as a shell pipeline; output in ``workdir``.log."""
    config, shards = RUNS[name]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {OPT_FLAGS[opt]}".strip()
    train = [py, "-m", "fer_jax.train", "--config", config, "--workdir", str(workdir), "--no_progress"]
    train += [f"--config.data.dir={data / 'shards' / shards}", f"--config.seed={seed}"]
    train += [f"--config.{kv}" for kv in overrides]
    evaluate = [py, "-m", "fer_jax.evaluate", "--workdir", str(workdir)]
    log = open(workdir.with_suffix(".log"), "w")  # noqa: SIM115 -- closed by the caller after wait
    cmd = f"{subprocess.list2cmdline(train)} && {subprocess.list2cmdline(evaluate)}"
    proc = subprocess.Popen(["bash", "-c", cmd], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def read_result(workdir: Path) -> dict | None:
    """WAR, UAR and low-light accuracy from the evaluation's metrics.json (None before it exists)."""
    from fer_jax.report import find_metrics

    try:
        m = json.loads(find_metrics(workdir).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return {"war": m["war"], "uar": m["uar"], "low": (m.get("per_lighting") or {}).get("low")}


def load_reused(spec: str, seeds: list[int], opts: list[str]) -> tuple[dict, dict]:
    """``EARLIER.json:RUN[,RUN]`` -> ({(run, seed, opt): result}, a note for the table's metadata);
    ValueError naming what is wrong (syntax, file, an unknown run, a missing combination)."""
    path, sep, names = spec.rpartition(":")
    runs = [n for n in names.split(",") if n]
    if not sep or not path or not runs:
        raise ValueError(f"--reuse {spec!r}: expected EARLIER.json:RUN[,RUN]")
    unknown = [n for n in runs if n not in RUNS]
    if unknown:
        raise ValueError(f"--reuse {spec!r}: unknown run {unknown[0]!r} (one of {', '.join(RUNS)})")
    try:
        earlier = json.loads(Path(path).read_text())
        rows = earlier["results"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--reuse {spec!r}: not a benchmarks/demo_seeds.py JSON ({e})") from e
    by_key = {(r["run"], r["seed"], r["opt"]): r for r in rows}
    taken = {}
    for name in runs:
        for seed in seeds:
            for opt in opts:
                r = by_key.get((name, seed, opt))
                if r is None:
                    raise ValueError(f"--reuse {spec!r}: {path} has no {name}-s{seed}-{opt}")
                taken[(name, seed, opt)] = {k: r.get(k) for k in ("run", "seed", "opt", *METRICS)}
    note = {"file": path, "runs": runs, "command": earlier.get("command"), "date": earlier.get("date")}
    return taken, note


def spread(values: list[float]) -> dict:
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def summarise(results: list[dict]) -> dict:
    """Per run and metric the spread over every (seed, level); the paired low-light gap; target minima."""
    out: dict = {"runs": {}, "gap": None, "targets": []}
    for name in RUNS:
        rows = [r for r in results if r["run"] == name]
        if not rows:
            continue
        out["runs"][name] = {
            m: spread([r[m] for r in rows if r.get(m) is not None])
            for m in METRICS
            if rows[0].get(m) is not None
        }
    a, b, cond, margin = GAP
    by_key = {(r["run"], r["seed"], r["opt"]): r for r in results}
    gaps = [
        r[cond] - by_key[(b, r["seed"], r["opt"])][cond]
        for r in results
        if r["run"] == a and (b, r["seed"], r["opt"]) in by_key
    ]
    if gaps:
        out["gap"] = {**spread(gaps), "target": f"{a} - {b} >= {margin} under {cond} light"}
        out["gap"]["met_by_min"] = out["gap"]["min"] >= margin
    for name, (metric, threshold) in TARGETS.items():
        if name in out["runs"]:
            s = out["runs"][name][metric]
            out["targets"].append(
                {
                    "target": f"{name}.{metric} >= {threshold}",
                    "min": s["min"],
                    "met_by_min": s["min"] >= threshold,
                }
            )
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown(summary: dict, meta: dict) -> str:
    lines = [
        "# The demo's trainings over seeds and XLA optimisation levels",
        "",
        f"Printed by `{meta['command']}` on {meta['date']}; machine: {meta['machine']}.",
        f"Seeds {meta['seeds']}, levels {meta['opt']} ({meta['combinations']} trainings per run); "
        "accuracies in %; each row is mean +- std [min, max] over every seed and level.",
        "",
        *(
            [f"Not in the table (failed or not run): {', '.join(meta['missing'])}.", ""]
            if meta.get("missing")
            else []
        ),
        *(
            line
            for r in meta.get("reused", [])
            for line in (
                f"Reused, not trained again: {', '.join(r['runs'])} from `{r['file']}` (printed on {r['date']} by "
                f"`{r['command']}`): the data and config of {'these runs' if len(r['runs']) > 1 else 'this run'} "
                "are unchanged since.",
                "",
            )
        ),
        "| run | n | WAR | UAR | low light |",
        "|---|---:|---|---|---|",
    ]
    for name, s in summary["runs"].items():
        cells = []
        for m in METRICS:
            if m in s:
                v = s[m]
                cells.append(f"{_pct(v['mean'])} +- {_pct(v['std'])} [{_pct(v['min'])}, {_pct(v['max'])}]")
            else:
                cells.append("-")
        lines.append(f"| {name} | {s['uar']['n']} | " + " | ".join(cells) + " |")
    lines += ["", "| demo target | minimum over seeds and levels | met by the minimum |", "|---|---:|---|"]
    for t in summary["targets"]:
        lines.append(f"| {t['target']} | {_pct(t['min'])} | {'yes' if t['met_by_min'] else '**no**'} |")
    g = summary["gap"]
    if g:
        lines.append(
            f"| {g['target']} (paired by seed and level; mean {_pct(g['mean'])} +- {_pct(g['std'])}) | "
            f"{_pct(g['min'])} points | {'yes' if g['met_by_min'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--data", type=Path, default=ROOT / "runs/demo_seeds/data", help="the demo's data (built once)"
    )
    p.add_argument("--work", type=Path, default=ROOT / "runs/demo_seeds/runs", help="run folders (kept)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--opt", nargs="+", default=["default", "O1"], choices=sorted(OPT_FLAGS))
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--jobs", type=int, default=2, help="trainings side by side (default 2: the 2-core demo)")
    p.add_argument("--set", action="append", default=[], metavar="RUN:KEY=VALUE", help="a config override")
    p.add_argument("--tag", default="", help="a name for this recipe's runs (kept apart from others)")
    p.add_argument(
        "--reuse",
        action="append",
        default=[],
        metavar="EARLIER.json:RUN[,RUN]",
        help="take these runs' results from an earlier JSON of this script (unchanged data and config)",
    )
    p.add_argument("--out", type=Path, default=None, help="Markdown table (and .json beside it)")
    p.add_argument("--py", default=sys.executable, help="interpreter of the commands")
    p.add_argument(
        "--summarise-only",
        action="store_true",
        help="start nothing: tabulate the finished runs (others are listed)",
    )
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    overrides: dict[str, list[str]] = {name: [] for name in RUNS}
    for item in args.set:
        name, sep, kv = item.partition(":")
        if not sep or name not in RUNS or "=" not in kv:
            p.error(f"--set {item!r}: expected RUN:KEY=VALUE with RUN one of {', '.join(RUNS)}")
        overrides[name].append(kv)
    reused: dict = {}
    reuse_notes = []
    for spec in args.reuse:
        try:
            taken, note = load_reused(spec, args.seeds, args.opt)
        except ValueError as e:
            p.error(str(e))
        reused.update(taken)
        reuse_notes.append(note)

    work = (args.work / args.tag if args.tag else args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    todo = [(n, s, o) for s in args.seeds for o in args.opt for n in args.runs]
    # the data (about a minute) only when something will train: not for reused or finished runs alone
    trains = [t for t in todo if t not in reused and read_result(work / f"{t[0]}-s{t[1]}-{t[2]}") is None]
    if trains and not args.summarise_only:
        build_data(args.data.resolve(), args.py)
    results, running, failed = [], [], []
    started = time.time()
    while todo or running:
        while todo and len(running) < args.jobs:
            name, seed, opt = todo.pop(0)
            if (name, seed, opt) in reused:
                results.append(reused[(name, seed, opt)])
                continue
            wd = work / f"{name}-s{seed}-{opt}"
            done = read_result(wd)
            if done is not None:
                results.append({"run": name, "seed": seed, "opt": opt, **done})
                continue
            if args.summarise_only:
                failed.append(f"{wd.name} (not run)")
                continue
            if wd.exists():  # an interrupted run: start it again from nothing
                import shutil

                shutil.rmtree(wd)
            running.append(
                (
                    name,
                    seed,
                    opt,
                    wd,
                    run_one(name, seed, opt, args.data.resolve(), wd, args.py, overrides[name]),
                )
            )
            print(f"[{time.time() - started:6.0f}s] start {wd.name}", flush=True)
        time.sleep(1)
        for item in list(running):
            name, seed, opt, wd, proc = item
            if proc.poll() is None:
                continue
            running.remove(item)
            proc.log.close()
            r = read_result(wd) if proc.returncode == 0 else None
            if r is None:
                failed.append(wd.name)
                print(
                    f"[{time.time() - started:6.0f}s] FAILED {wd.name}: see {wd.with_suffix('.log')}",
                    flush=True,
                )
                continue
            results.append({"run": name, "seed": seed, "opt": opt, **r})
            low = "-" if r["low"] is None else _pct(r["low"])
            print(
                f"[{time.time() - started:6.0f}s] done  {wd.name}: WAR {_pct(r['war'])} UAR {_pct(r['uar'])} low {low}",
                flush=True,
            )
    summary = summarise(results)
    meta = {
        "command": "python benchmarks/demo_seeds.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {cpu_description()}",
        "seeds": args.seeds,
        "opt": args.opt,
        "combinations": len(args.seeds) * len(args.opt),
        "overrides": args.set,
        "missing": failed,
        "reused": reuse_notes,
    }
    table = markdown(summary, meta)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
        args.out.with_suffix(".json").write_text(
            json.dumps({**meta, **summary, "results": results}, indent=2) + "\n"
        )
    if failed:
        print(f"{len(failed)} trainings failed or not run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
