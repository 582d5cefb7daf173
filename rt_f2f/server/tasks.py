"""Background tasks that cannot outlive their owner or fail unseen."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: list[asyncio.Task] | set[asyncio.Task], timeout: float = 5.0) -> None:
    """Cancel tasks and wait (bounded) for them to finish, so nothing outlives its owner."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=timeout)


def spawn(coro: Awaitable, tasks: set[asyncio.Task], name: str) -> asyncio.Task:
    """Start a task that removes itself from ``tasks`` when done and logs (not loses) an unexpected exception."""
    task = asyncio.ensure_future(coro)
    task.set_name(name)
    tasks.add(task)

    def _done(t: asyncio.Task) -> None:
        tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("task %s failed", name, exc_info=t.exception())

    task.add_done_callback(_done)
    return task
