"""One way for the testing cluster's own processes (node agent, provisioner, service
proxy) to run until they are told to stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine


async def run_until_signalled(work: Coroutine, stop: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` until it ends or SIGTERM/SIGINT arrives, then await ``stop()``; what
    ``work`` raised is raised again (a process that failed exits non-zero)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    running = asyncio.ensure_future(work)
    await asyncio.wait(
        [running, asyncio.ensure_future(stopping.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    running.cancel()
    await stop()
    if running.done() and not running.cancelled() and running.exception():
        raise running.exception()
