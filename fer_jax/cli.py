"""What every entry point shares: the one-line error message, the exit codes and the input checks that
must run before any work (argument parsing, JSON files of a run, output paths, atomic writes).

Every CLI (``fer_jax.train``, ``evaluate``, ``predict``, ``interpret``, ``convert``, ``report``,
``data_prep.build``, ``data_prep.synthesize``) prints ``error: <one line>`` on stderr and exits non-zero on
bad input, never a traceback. Exit codes: 0 success, 1 a failure while running, 2 bad usage / input,
``128 + signal`` after SIGINT / SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from fer_jax.paths import as_path, is_remote

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT


def one_line(exc: BaseException | str, *, with_type: bool = False, last: bool = False) -> str:
    """The first (or ``last``) non-blank line of an exception's message, whitespace-stripped.

    ``with_type`` prefixes ``TypeName: `` (for errors whose message alone is ambiguous). A message without
    text gives the type name, so the line is never empty.
    """
    text = exc if isinstance(exc, str) else str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = (lines[-1] if last else lines[0]) if lines else ""
    if isinstance(exc, BaseException) and (with_type or not line):
        return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return line


def error(msg: str) -> None:
    """Prints ``error: msg`` (one line) on stderr."""
    print(f"error: {one_line(msg)}", file=sys.stderr)


def fail(msg: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Prints ``error: msg`` on stderr and exits with ``code``."""
    error(msg)
    sys.exit(code)


def interrupted(what: str = "") -> int:
    """Ctrl-C in a CLI: one line on stderr (no traceback); returns the exit status 130."""
    print(f"interrupted{f' {what}' if what else ''}", file=sys.stderr)
    return EXIT_INTERRUPTED


def input_error(exc: ValueError | OSError) -> int:
    """A CLI's expected failure as one line on stderr; returns its exit status: bad input (``ValueError``,
    ``FileNotFoundError``) is a usage error (2), another ``OSError`` (disk full, permissions) a failure (1).
    Use as ``except (ValueError, OSError) as e: return input_error(e)``."""
    if isinstance(exc, ValueError | FileNotFoundError):
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    print(f"error: {one_line(exc, with_type=True)}", file=sys.stderr)
    return EXIT_FAILURE


class Parser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line (``error: ...``, exit 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {one_line(message)} (see --help)\n")


def checkpoint_arg(text: str) -> str:
    """``--checkpoint``: ``best``, ``latest`` or a step number >= 0 (an argparse ``type``)."""
    if text in ("best", "latest") or (text.isdigit() and text.isascii()):
        return text
    raise argparse.ArgumentTypeError(f"must be best, latest or a step number, got {text!r}")


def read_json(path: str | os.PathLike, what: str = "", *, kind: type = dict) -> Any:
    """The JSON in ``path`` as a ``kind`` (dict by default); ``ValueError`` naming the file when it is
    missing, not UTF-8, not JSON or of another kind (a truncated or hand-edited file is one line)."""
    path = as_path(path) if is_remote(path) else Path(path)  # gs:// through etils.epath
    name = f"{what} {path}" if what else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{name} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {name} ({one_line(e, with_type=True)})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{name} is not valid JSON ({e})") from None
    if not isinstance(value, kind):
        raise ValueError(f"{name} holds a JSON {type(value).__name__}, expected an object")
    return value


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Refuses (``ValueError``, one line) an output folder that is a file or lies below a file, before any
    work is done (an evaluation that fails at its last write has lost its compute). Creates nothing.
    A remote folder (``gs://``) is returned as an ``epath.Path``, checked only for being a file."""
    if is_remote(path):
        path = as_path(path)
        if path.is_file():
            raise ValueError(f"{flag} {path} is a file; give a folder")
        return path
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                where = "is a file" if p == path else f"lies inside {p}, which is a file"
                raise ValueError(f"{flag} {path} {where}; give a folder")
            return path
    return path


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Refuses (``ValueError``, one line) an output file path that is a folder or lies below a file."""
    path = as_path(path) if is_remote(path) else Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file path such as {path / 'report.md'}")
    for p in path.parents:
        if p.exists():
            if not p.is_dir():
                raise ValueError(f"{flag} {path} lies inside {p}, which is a file; give a path in a folder")
            break
    return path


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Writes ``path`` through a temporary file in its folder and a rename: an interrupted write leaves
    the old file (or none), never half of the new one. A remote object (``gs://``) is uploaded whole,
    which is atomic already."""
    if is_remote(path):
        as_path(path).write_bytes(data.encode() if isinstance(data, str) else data)
        return
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
