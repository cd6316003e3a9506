"""Training batches placed on the device ahead of the step that consumes them.

``DevicePrefetch(host_iterator, put, size=2)`` keeps ``size`` batches already handed to ``put`` (an
asynchronous ``jax.device_put`` onto the mesh's ``'data'`` sharding), so the host-to-device copy of the
next batches overlaps the running step instead of sitting in front of it. No thread: ``put`` is
asynchronous, and the grain workers already decode in the background.

Exact resume: ``get_state()`` is the host iterator's position of the batches the loop has CONSUMED (the
state recorded before the oldest batch still waiting was drawn), never of those drawn ahead; ``set_state``
drops the waiting batches. ``wait_s`` adds up the seconds spent waiting for host batches (the data wait of
``metrics.jsonl``).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any


class DevicePrefetch:
    """Iterator of device batches over a host iterator with ``get_state`` / ``set_state`` (grain's).

    ``size`` 0 puts each batch when it is asked for (no look-ahead), with the same interface.
    """

    def __init__(self, host_iterator, put: Callable[[dict], Any], size: int = 2):
        if size < 0:
            raise ValueError(f"prefetch size must be >= 0, got {size}")
        self._it = host_iterator
        self._put = put
        self._size = int(size)
        self._queue: collections.deque = collections.deque()  # (state before the batch, device batch)
        self.wait_s = 0.0

    def __iter__(self):
        return self

    def _draw(self) -> tuple[Any, Any]:
        state = self._it.get_state()
        t = time.perf_counter()
        host = next(self._it)
        self.wait_s += time.perf_counter() - t
        return state, self._put(host)

    def __next__(self):
        if not self._queue:
            self._queue.append(self._draw())
        _, batch = self._queue.popleft()
        while len(self._queue) < self._size:
            self._queue.append(self._draw())  # put before the step runs: the copy overlaps it
        return batch

    def get_state(self) -> Any:
        """The position after the last batch returned by ``__next__``."""
        return self._queue[0][0] if self._queue else self._it.get_state()

    def set_state(self, state: Any) -> None:
        self._queue.clear()
        self._it.set_state(state)
