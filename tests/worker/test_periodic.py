"""The periodic re-read the overlay and the releases share: at most every N seconds, retried after a failure,
never two at once."""

from __future__ import annotations

import threading

import pytest

from worker.periodic import Periodic


def test_refreshes_when_stale_and_retries_after_a_failure() -> None:
    now, calls, failing = [0.0], [], [True]

    def refresh() -> None:
        calls.append(now[0])
        if failing[0]:
            raise ConnectionError("database away")

    tick = Periodic(refresh, 30, lambda: now[0])
    with pytest.raises(ConnectionError):
        tick()
    failing[0] = False
    tick()  # not stale yet by time, but the last refresh failed: tried again
    now[0] = 29.0
    tick()
    now[0] = 30.0
    tick()
    assert calls == [0.0, 0.0, 30.0]


def test_one_thread_refreshes_while_the_others_go_on() -> None:
    entered, release, calls = threading.Event(), threading.Event(), []

    def refresh() -> None:
        calls.append(1)
        entered.set()
        release.wait(5)

    tick = Periodic(refresh, 0)
    first = threading.Thread(target=tick)
    first.start()
    entered.wait(5)
    tick()  # returns at once: the first thread holds the refresh
    release.set()
    first.join(5)
    assert calls == [1]
