"""Data benchmark: build throughput, shard size per clip (JPEG vs raw) with decode speed, and pipeline
throughput with 0 / 1 / 2 grain workers (training transform with augmentation).

  python benchmarks/data.py [--clips 24] [--frames 16] [--size 112] [--batches 12] [--out docs/bench/data.md]

Runs on the synthetic DFEW generator's output (built in a temporary folder), prints a Markdown table and
optionally writes it to ``--out``. Numbers depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--clips", type=int, default=24, help="synthetic DFEW clips (default 24)")
    p.add_argument("--frames", type=int, default=16, help="T frames per clip (16)")
    p.add_argument("--size", type=int, default=112, help="S (112)")
    p.add_argument("--batch", type=int, default=8, help="pipeline batch size (8, paper 1)")
    p.add_argument("--batches", type=int, default=12, help="batches timed per pipeline setting (12)")
    p.add_argument("--out", default="", help="also write the Markdown table here")
    a = p.parse_args(argv)
    if a.clips < 14 or a.frames < 1 or a.size < 16 or a.batches < 1 or a.batch < 1:
        p.error("need --clips >= 14, --frames >= 1, --size >= 16, --batch >= 1, --batches >= 1")
    return a


def _build(raw: Path, out: Path, a, workers: int, encoding: str) -> float:
    from data_prep import build

    argv = ["--dataset", "dfew", "--root", str(raw), "--out", str(out), "--frames", str(a.frames),
            "--size", str(a.size), "--workers", str(workers), "--encoding", encoding, "--quiet",
            "--landmarks", "file:landmarks", "--max-skip", "1"]  # fmt: skip
    t0 = time.perf_counter()
    if build.main(argv) != 0:
        raise SystemExit(f"error: build with {workers} workers failed")
    return time.perf_counter() - t0


def _shard_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.glob("*.array_record*"))


def _decode_rate(d: Path) -> float:
    """Clips per second: read + decode every stored frame (no augmentation), one thread."""
    from fer_jax.data.schema import decode_frames
    from fer_jax.data.source import ShardSource

    src = ShardSource(d, "train")
    t0 = time.perf_counter()
    for i in range(len(src)):
        decode_frames(src[i]["frames"])
    return len(src) / (time.perf_counter() - t0)


def _pipeline_rate(d: Path, a, workers: int) -> float:
    from configs.common import base_config
    from fer_jax.data import pipeline

    c = base_config()
    c.data.dir, c.data.num_frames, c.data.image_size = str(d), a.frames, a.size
    c.data.num_workers, c.data.augment = workers, True
    c.train.batch_size = a.batch
    it = pipeline.make_train_iterator(c)
    next(it)  # worker start-up and first batch are not throughput
    t0 = time.perf_counter()
    for _ in range(a.batches):
        next(it)
    return a.batches * a.batch / (time.perf_counter() - t0)


def main(argv=None) -> int:
    a = _parse(argv)
    from absl import flags

    flags.FLAGS.mark_as_parsed()  # grain workers read absl flags
    from data_prep.synthesize import synthesize

    tmp = Path(tempfile.mkdtemp(prefix="fer_jax_databench_"))
    try:
        raw = synthesize("dfew", tmp / "raw", clips=a.clips, seed=0, workers=2)
        t1 = _build(raw, tmp / "jpeg1", a, 1, "jpeg")
        t2 = _build(raw, tmp / "jpeg2", a, 2, "jpeg")
        _build(raw, tmp / "raw2", a, 2, "raw")
        from fer_jax.data.manifest import load_manifest

        n = sum(load_manifest(tmp / "jpeg1")["num_examples"].values())
        rows = [
            ("build, 1 worker", f"{n / t1 * 60:.1f} clips/min"),
            ("build, 2 workers", f"{n / t2 * 60:.1f} clips/min"),
        ]
        for enc in ("jpeg", "raw"):
            d = tmp / ("jpeg2" if enc == "jpeg" else "raw2")
            per_clip = _shard_bytes(d) / n / 1024
            rows.append((f"shard size per clip, {enc}", f"{per_clip:.1f} KiB"))
            rows.append((f"read + decode, {enc} (1 thread)", f"{_decode_rate(d):.1f} clips/s"))
        for w in (0, 1, 2):
            rows.append(
                (
                    f"pipeline with augmentation, {w} workers",
                    f"{_pipeline_rate(tmp / 'jpeg2', a, w):.1f} clips/s",
                )
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    head = (
        f"Synthetic DFEW, {n} clips, T={a.frames}, S={a.size}, batch {a.batch}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; {time.strftime('%Y-%m-%d')}"
    )
    table = "\n".join(
        [head, "", "| measurement | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    )
    print(table)
    if a.out:
        Path(a.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
