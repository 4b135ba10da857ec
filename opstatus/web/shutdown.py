"""Graceful shutdown: on SIGTERM or SIGINT, open long-polls and event streams end at once.

uvicorn, told to stop, closes its listening sockets and then waits for every request in
flight to finish — up to its graceful-shutdown timeout, after which it cancels them,
and each cancelled one answers 500. A long-poll or an event stream would hold that wait
for its whole duration. So the moment the signal arrives, the notifier is closed: every
long-poll answers what it has (an operation as it is, an empty inbox page), every
stream ends, writes in flight finish, and the process exits soon after.

The handler chains to the one it replaces (uvicorn's), which still does the stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from opstatus.service.notifier import Notifier

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def drain_on_signal(notifier: Notifier) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT close ``notifier`` before the server stops.

    Outside the main thread (an app run by a test client) signals cannot be handled,
    and nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(notifier.close)
        before = previous.get(signum)
        if callable(before):
            before(signum, frame)

    for signum in SIGNALS:
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, handle)
    try:
        yield
    finally:
        for number, before in previous.items():
            signal.signal(number, before)
