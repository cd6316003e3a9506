"""Shared pieces of the builders: the work item, skip records, and the parallel map with a progress bar.

Every problem with an input becomes a ``Skip`` (item + one-line reason) or a ``note`` on a repaired
example; nothing bad turns into a silently wrong record.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm


@dataclasses.dataclass(frozen=True)
class Item:
    """One example to build: where its source is and what its label is."""

    split: str
    key: str  # unique within the split; becomes the record's ``id``
    label: int  # 0-based
    paths: dict[str, str]  # source paths by role (frames, video, event, landmarks, raw_events, ...)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Skip:
    """An input left out (``repaired=False``) or fixed and kept (``repaired=True``), with its reason."""

    item: str
    reason: str
    repaired: bool = False

    def as_dict(self) -> dict[str, str]:
        return {"item": self.item, "reason": self.reason}


@dataclasses.dataclass
class Result:
    """What a worker returns for one item: the record, or the reason it was skipped."""

    split: str
    key: str
    example: dict[str, Any] | None = None
    skip: str | None = None
    checksum: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)
    stats: dict[str, float] = dataclasses.field(default_factory=dict)


def guarded(fn: Callable[[Item], Result], item: Item) -> Result:
    """Runs ``fn`` and turns any failure into a skip reason naming the item (never kills the build)."""
    try:
        return fn(item)
    except ValueError as e:
        return Result(item.split, item.key, skip=str(e).splitlines()[0] if str(e) else "ValueError")
    except Exception as e:  # noqa: BLE001 - a broken input must not take the whole build down
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        return Result(item.split, item.key, skip=f"unexpected error: {last}")


def parallel_map(
    fn: Callable[[Item], Result], items: list[Item], *, workers: int, desc: str, quiet: bool = False
) -> Iterator[Result]:
    """Yields ``guarded(fn, item)`` for every item, over ``workers`` spawned processes (1: in process),
    with a tqdm progress bar on stderr. Order of results is not the order of items."""
    bar = tqdm(total=len(items), desc=desc, unit="clip", disable=quiet, dynamic_ncols=True)
    try:
        if workers <= 1 or len(items) <= 1:
            for it in items:
                r = guarded(fn, it)
                bar.update()
                yield r
            return
        # spawn: the parent may hold threads (TFDS, OpenCV) that fork would copy in a broken state
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_worker_init) as pool:
            for r in pool.imap_unordered(_Call(fn), items, chunksize=1):
                bar.update()
                yield r
    finally:
        bar.close()


class _Call:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, item: Item) -> Result:
        return guarded(self.fn, item)


def _worker_init() -> None:
    import cv2

    # one OpenCV thread per worker: the workers already use every core
    cv2.setNumThreads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def inside(root: Path, path: Path) -> bool:
    """Whether ``path``, symlinks followed, lies inside ``root``: a name read from a label file or a folder
    listing (``../..``, an absolute path, a symlink) must never make a build read outside the dataset."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False


def dedupe_keys(keys: Iterable[str]) -> set[str]:
    seen, dup = set(), set()
    for k in keys:
        (dup if k in seen else seen).add(k)
    return dup
