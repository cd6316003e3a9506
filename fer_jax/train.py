"""Train a model: ``python -m fer_jax.train --config configs/X.py --workdir DIR [--config.optim.lr=3e-4]``.

Thin entry point over :func:`fer_jax.training.loop.train`: parses the config (ml_collections
``config_flags``; any field can be overridden on the command line), trains, resumes when ``DIR`` already
holds checkpoints. Exit status: 0 finished or early-stopped, 1 error (one line on stderr), 130 / 143 after
SIGINT / SIGTERM (a checkpoint was saved first).
"""

from __future__ import annotations

import signal
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from fer_jax.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, one_line

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config file, e.g. configs/dfew.py")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory: config, checkpoints, logs, figures")
_NO_PROGRESS = flags.DEFINE_bool("no_progress", False, "hide the progress bar")


def _parse(argv: list[str]) -> list[str]:
    """absl flag parsing with a one-line error instead of a usage dump; ``--help`` exits 0."""
    if any(a in ("-h", "--help", "--helpshort", "-?") for a in argv[1:]):
        print(__doc__)
        print(flags.FLAGS.module_help(sys.modules[__name__]))
        sys.exit(0)
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # flags.Error, or the config file's own failure (missing get_config, bad override)
        print(f"error: {one_line(e, with_type=True, last=True)}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _interrupted_at_start() -> int:
    print("interrupted during start-up, before the first step: no checkpoint was written", file=sys.stderr)
    return 128 + signal.SIGINT


def main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)  # absl would print JAX's backend probing at INFO on stderr
    if len(argv) > 1:
        print(f"error: unexpected arguments {' '.join(argv[1:])}", file=sys.stderr)
        return EXIT_USAGE
    if _CONFIG.value is None or not _WORKDIR.value:
        print("error: --config and --workdir are required (see --help)", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = _CONFIG.value
        config.get("model")  # config_flags reports a missing file lazily, on first attribute access
    except Exception as e:
        print(f"error: {one_line(e, with_type=True, last=True)}", file=sys.stderr)
        return EXIT_USAGE
    if config is None or not _WORKDIR.value:
        print("error: --config and --workdir are required (see --help)", file=sys.stderr)
        return EXIT_USAGE
    try:
        from fer_jax.training.loop import NonFiniteLossError, train
    except KeyboardInterrupt:
        return _interrupted_at_start()
    try:
        summary = train(config, _WORKDIR.value, progress=not _NO_PROGRESS.value)
    except KeyboardInterrupt:  # Ctrl-C before the loop's own handler (which saves a checkpoint) is up
        return _interrupted_at_start()
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as e:  # one line for the user; the library call shows the traceback
        print(f"error: {one_line(e, with_type=True, last=True)}", file=sys.stderr)
        return EXIT_FAILURE
    best = summary["best_uar"]
    best_txt = (
        f"best UAR {100 * best:.2f} at step {summary['best_step']}" if best is not None else "no evaluation"
    )
    print(f"{summary['status']} at step {summary['step']}; {best_txt}; workdir {_WORKDIR.value}")
    if summary["status"] == "interrupted":
        return 128 + int(summary.get("signal") or signal.SIGTERM)
    return EXIT_OK


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)), flags_parser=_parse)
