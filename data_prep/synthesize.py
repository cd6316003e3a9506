"""Synthetic datasets in the real DFEW and SEE layouts (no real dataset can be downloaded here).

  python -m data_prep.synthesize --kind dfew --out data/synth_dfew [--clips 600] [--seed 0] [--videos]
  python -m data_prep.synthesize --kind see  --out data/synth_see  [--clips 500] [--seed 0]

``dfew``: procedurally drawn faces whose 7 expressions are built from action units and evolve over time;
layout and formats in ``data_prep/synth/dfew.py``. ``see``: a single eye with brow and lids under four
lighting conditions, RGB frames, SEE-style event frames and raw event streams; layout and formats in
``data_prep/synth/see.py``. Output is deterministic in ``--seed`` (per clip seeds, so also independent of
``--workers``). The output directory must be empty or absent; ``--overwrite`` replaces an earlier output
of this command (it holds ``synthesis.json``), never another folder.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import os
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

from fer_jax.cli import one_line

DEFAULT_CLIPS = {"dfew": 600, "see": 500}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m data_prep.synthesize", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    p.add_argument("--kind", required=True, choices=("dfew", "see"), help="which dataset layout to write")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--clips", type=int, default=None, help="number of clips / sequences (dfew 600, see 500)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)")
    p.add_argument(
        "--nuisance",
        type=float,
        default=1.0,
        help="dfew: 0..1 scale of pose / background / lighting / blur / noise variation (default 1)",
    )
    p.add_argument(
        "--median-frames",
        type=int,
        default=32,
        help="dfew: median clip length in frames (default 32; log-normal, 8-120)",
    )
    p.add_argument(
        "--test-floor",
        type=int,
        default=None,
        help="dfew: at least this many clips of every class in each fold's test split "
        "(default 2 from 200 clips; the rest follow DFEW's class proportions)",
    )
    p.add_argument("--videos", action="store_true", help="dfew: also write Clip/original/<id>.mp4 (mp4v)")
    p.add_argument("--no-raw-events", action="store_true", help="see: skip raw_events/ (the largest part)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier output of this command at --out"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _run(tasks, fn, workers: int, desc: str, quiet: bool) -> list:
    bar = tqdm(total=len(tasks), desc=desc, unit="clip", disable=quiet)
    results = []
    if workers <= 1:
        for t in tasks:
            results.append(fn(t))
            bar.update()
    else:
        # spawn: safe with threads other libraries may have started in the parent
        with mp.get_context("spawn").Pool(workers) as pool:
            for r in pool.imap(fn, tasks, chunksize=4):
                results.append(r)
                bar.update()
    bar.close()
    return results


def synthesize(
    kind: str, out: str | os.PathLike, *, clips: int | None = None, seed: int = 0, workers: int = 1,
    videos: bool = False, raw_events: bool = True, nuisance: float = 1.0, quiet: bool = True,
    median_frames: int = 32, test_floor: int | None = None,
) -> Path:  # fmt: skip
    """Library entry point of the CLI; returns the output directory."""
    out = Path(out)
    n = DEFAULT_CLIPS[kind] if clips is None else int(clips)
    settings = {
        "kind": kind,
        "clips": n,
        "seed": seed,
        "videos": videos,
        "raw_events": raw_events,
        "nuisance": nuisance,
        "median_frames": median_frames,
        "test_floor": test_floor,
    }
    out.mkdir(parents=True, exist_ok=True)
    if kind == "dfew":
        from data_prep.synth import dfew

        plan = dfew.plan_clips(n, seed, median_frames, test_floor)
        _run(
            plan,
            functools.partial(dfew.write_clip, out, videos=videos, nuisance=nuisance),
            workers,
            "dfew",
            quiet,
        )
        dfew.write_splits(out, plan)
        dfew.write_meta(out, plan, settings)
    else:
        from data_prep.synth import see

        plan = see.plan_sequences(n, seed)
        num_events = _run(
            plan, functools.partial(see.write_sequence, out, raw_events=raw_events), workers, "see", quiet
        )
        see.write_index(out, plan, settings, num_events)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    out = Path(args.out)
    minimum = 7
    if args.clips is not None and args.clips < minimum:
        print(f"error: --clips must be at least {minimum} (one per class), got {args.clips}", file=sys.stderr)
        return 2
    if not 0.0 <= args.nuisance <= 1.0:
        print(f"error: --nuisance must be in [0, 1], got {args.nuisance}", file=sys.stderr)
        return 2
    if args.median_frames < 8:
        print(f"error: --median-frames must be >= 8, got {args.median_frames}", file=sys.stderr)
        return 2
    if args.test_floor is not None and args.test_floor < 1:
        print(f"error: --test-floor must be >= 1, got {args.test_floor}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    if args.seed < 0:  # numpy seeds are non-negative; caught here, before --out is created
        print(f"error: --seed must be >= 0, got {args.seed}", file=sys.stderr)
        return 2
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} exists and is not a directory", file=sys.stderr)
        return 2
    blocker = next((q for q in out.parents if q.exists() and not q.is_dir()), None)
    if blocker is not None:  # else mkdir fails with a bare "Not a directory" naming --out, not the file
        print(f"error: --out {out}: {blocker} is a file, not a folder", file=sys.stderr)
        return 2
    if out.is_dir() and any(out.iterdir()):
        # --overwrite replaces only an earlier output of ours (synthesis.json), never a user's folder
        if not (out / "synthesis.json").is_file():
            msg = f"--out {out} is not empty and not a synthetic dataset of ours (no synthesis.json)"
            print(f"error: {msg}; choose another folder", file=sys.stderr)
            return 2
        if not args.overwrite:
            print(f"error: --out {out} is not empty (use --overwrite to replace it)", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    if args.kind == "see":
        from data_prep.synth import see as see_plan

        # SEE draws its test sequences per emotion x lighting group: a few dozen leave the test split empty
        n = DEFAULT_CLIPS["see"] if args.clips is None else args.clips
        if not any(it["subset"] == "testing" for it in see_plan.plan_sequences(n, args.seed)):
            print(f"warning: --clips {n} gives an empty SEE test split; use more clips", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        synthesize(
            args.kind, out, clips=args.clips, seed=args.seed, workers=args.workers, videos=args.videos,
            raw_events=not args.no_raw_events, nuisance=args.nuisance, quiet=args.quiet,
            median_frames=args.median_frames, test_floor=args.test_floor,
        )  # fmt: skip
    except (OSError, ValueError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {args.kind} to {out}: {size / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
