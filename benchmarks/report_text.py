"""What every benchmark's Markdown output starts and ends with: the command and machine line, the write."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path


def printed_by(script: str, argv: list[str] | None) -> str:
    """``Printed by `python benchmarks/SCRIPT ARGS` on DATE; N cores, MACHINE; load L now`` (no final dot)."""
    args = " ".join(argv if argv is not None else sys.argv[1:])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"Printed by `{f'python benchmarks/{script} {args}'.rstrip()}`"
        + f" on {time.strftime('%Y-%m-%d %H:%M')} UTC; {os.cpu_count()} cores, {platform.machine()}; load {load:.1f}"
    )


def emit(lines: list[str], out: str | None) -> str:
    """Joins ``lines``, prints them and writes them to ``out`` when given; returns the text."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        Path(out).write_text(text)
    return text
