"""Writes ``constraints.txt``: the exact versions of fer_jax's dependencies installed in this environment.

  .venv/bin/python scripts/constraints.py [--out constraints.txt] [--extras dev,landmarks]

(``make constraints``.) The pins are the installed versions of the dependency closure of
``fer_jax[EXTRAS]``, read from the environment's package metadata: every package fer_jax requires, what
those require, and so on, with environment markers and extras evaluated here. fer_jax itself, and any
package installed beside it that it does not need (a torch for golden files, say), are left out, and a
requirement that is not installed is not pinned: the file lists only what the environment CI tests in
holds. The Makefile installs with ``pip install -c constraints.txt``, and the TPU notebooks install the
same file, so users get the versions the tests passed with.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "fer_jax"


def closure(project: str = PROJECT, extras: tuple[str, ...] = ("dev", "landmarks")) -> dict[str, str]:
    """``{canonical name: installed version}`` of everything ``project[extras]`` needs (itself excluded)."""
    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(project, frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        if (canonicalize_name(name), wanted) in seen:
            continue
        seen.add((canonicalize_name(name), wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here (a marker excluded it, or an optional extra): nothing to pin
        if canonicalize_name(name) != canonicalize_name(project):
            pins[canonicalize_name(dist.metadata["Name"])] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            # a requirement applies without extras ("extra" empty) or under one of the extras asked for
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in ("", *wanted)):
                continue
            if canonicalize_name(req.name) == canonicalize_name(project):
                todo.append((project, wanted | frozenset(req.extras)))  # fer_jax[landmarks] inside [dev]
            else:
                todo.append((req.name, frozenset(req.extras)))
    return dict(sorted(pins.items()))


def render(pins: dict[str, str]) -> str:
    py = ".".join(map(str, sys.version_info[:3]))
    head = [
        "# The versions fer_jax's tests passed with: `make constraints` (scripts/constraints.py) writes this",
        f"# file from the environment CI tests in (Python {py}); `pip install -c constraints.txt ...` uses it.",
    ]
    return "\n".join(head + [f"{n}=={v}" for n, v in pins.items()]) + "\n"


def read(path: str | Path) -> dict[str, str]:
    """``{canonical name: version}`` of a constraints file (comments and blank lines ignored)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = version.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/constraints.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="constraints.txt", help="file to write (constraints.txt; - = stdout)")
    p.add_argument("--extras", default="dev,landmarks", help="extras of fer_jax to include (dev,landmarks)")
    args = p.parse_args(argv)
    try:
        metadata.distribution(PROJECT)
    except metadata.PackageNotFoundError:
        print(f"error: {PROJECT} is not installed in {sys.prefix}; run make venv first", file=sys.stderr)
        return 1
    text = render(closure(extras=tuple(e for e in args.extras.split(",") if e)))
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}: {text.count('==')} pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
