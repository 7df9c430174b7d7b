"""A worker's periodic re-read of state other processes change (the knowledge-base overlay, the releases)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Periodic:
    """Calls ``refresh`` when at least ``every_s`` seconds have passed since it last succeeded, in one thread at
    a time: the other threads go on with what they have instead of waiting. A refresh that raises is tried
    again at the next call (its error goes to the caller)."""

    def __init__(
        self, refresh: Callable[[], None], every_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._refresh, self.every_s, self._clock = refresh, every_s, clock
        self._done_at = float("-inf")
        self._lock = threading.Lock()

    def __call__(self) -> None:
        if self._clock() - self._done_at < self.every_s or not self._lock.acquire(blocking=False):
            return
        try:
            self._refresh()
            self._done_at = self._clock()
        finally:
            self._lock.release()
