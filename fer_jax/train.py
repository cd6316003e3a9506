"""Train a model: ``python -m fer_jax.train --config configs/X.py --workdir DIR [--config.optim.lr=3e-4]``.

Thin entry point over :func:`fer_jax.training.loop.train`: parses the config (ml_collections
``config_flags``; any field can be overridden on the command line), trains, resumes when ``DIR`` already
holds checkpoints. Exit status: 0 finished or early-stopped, 1 error (one line on stderr), 130 / 143 after
SIGINT / SIGTERM (a checkpoint was saved first). Several hosts: run the same command on each;
``jax.distributed`` starts when the environment describes several processes (SLURM, Open MPI, a TPU pod
slice, ``JAX_COORDINATOR_ADDRESS`` or ``FER_JAX_COORDINATOR``; docs/training.md), and a signal to any one
process stops all of them at the same step with the same exit status.
"""

from __future__ import annotations

import ast
import signal
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from fer_jax import cpu_threads
from fer_jax.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, check_output_dir, input_error, one_line

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
        print(f"error: {_config_error(e, _config_arg(argv))}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _config_arg(argv: list[str]) -> str | None:
    """The ``--config`` file named on the command line (flags are not parsed yet when parsing fails)."""
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            return a.split("=", 1)[1]
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _config_error(e: BaseException, name: str | None = None) -> str:
    """One line for a config that does not load: names the file; an override of an unknown field
    (ml_collections quotes its message) reads as text."""
    text = str(e)
    if isinstance(e, AttributeError | KeyError) and text[:1] in "'\"":
        try:  # ml_collections raises AttributeError(repr(message)) for unknown fields
            text = str(ast.literal_eval(text))
        except (ValueError, SyntaxError):
            pass
        lines = [ln.strip().strip("'") for ln in text.splitlines() if ln.strip()]
        if lines:
            return f"no config field {lines[0]!r}" + (f": {lines[-1]}" if len(lines) > 1 else "")
    line = one_line(e, with_type=True, last=True)
    if name is None:
        try:
            name = config_flags.get_config_filename(flags.FLAGS["config"])
        except Exception:  # noqa: BLE001 (no --config given: the message alone)
            name = None
    return f"--config {name}: {line}" if name and name not in line else line


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
        print(f"error: {_config_error(e)}", file=sys.stderr)
        return EXIT_USAGE
    if config is None or not _WORKDIR.value:
        print("error: --config and --workdir are required (see --help)", file=sys.stderr)
        return EXIT_USAGE
    try:  # a workdir that is a file would fail only after the data was read and the model built
        check_output_dir(_WORKDIR.value, "--workdir")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:  # before anything creates the JAX backend
        cpu_threads.apply_from_env()
    except ValueError as e:
        return input_error(e)
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
