"""What every entry point shares: the one-line error message and the exit codes.

Every CLI (``fer_jax.train``, ``evaluate``, ``predict``, ``interpret``, ``convert``, ``report``,
``data_prep.build``, ``data_prep.synthesize``) prints ``error: <one line>`` on stderr and exits non-zero on
bad input, never a traceback. Exit codes: 0 success, 1 a failure while running, 2 bad usage / input,
``128 + signal`` after SIGINT / SIGTERM.
"""

from __future__ import annotations

import sys
from typing import NoReturn

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


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
