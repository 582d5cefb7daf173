"""A stream's handle on frames handed to the shared generator: settled one by one, awaited as a whole.

The batcher settles each frame (rendered, skipped late, or failed) from its generator thread; the stream waits on
the ticket from a thread (``wait``) or an event loop (``wait_async``) or registers a callback. Kept apart from the
batching policy because streams need only this, never the policy.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable

import numpy as np

from .backends import OUT_SHAPE


class RenderTicket:
    """``size`` frames of one stream handed to the batcher; ready when every one is rendered or skipped.

    ``output(i)`` is frame ``i``'s (3, 96, 96) result (a view into its batch's output, not a copy) where
    ``rendered[i]`` is True; the other frames were skipped (they could not be rendered by ``deadline``) or failed
    with ``error``.
    """

    def __init__(
        self, stream: Hashable, mel: np.ndarray, faces: np.ndarray, deadline: float, submitted: float, required: bool
    ) -> None:
        size = len(mel)
        self.stream = stream
        self.size = size
        self.deadline = deadline
        self.submitted = submitted
        self._rows: list[np.ndarray | None] = [None] * size
        self.rendered = np.zeros(size, bool)
        self.finished: float | None = None  # clock time when the last frame was settled
        self.error: BaseException | None = None
        self.required = required  # never skipped: rendered however late (a blocking ``infer``)
        self.mel: np.ndarray | None = mel  # inputs, dropped once every frame is in a batch or skipped
        self.faces: np.ndarray | None = faces
        self._unbatched = size
        self._left = size
        self._event = threading.Event()
        self._callbacks: list[Callable[[RenderTicket], None]] = []
        self._lock = threading.Lock()
        if size == 0:
            self.finished = submitted
            self._event.set()

    @property
    def ready(self) -> bool:
        return self._event.is_set()

    @property
    def skipped(self) -> int:
        """Frames settled without a render (late or failed); only final once ``ready``."""
        return int(self.size - self.rendered.sum()) - self._left

    def output(self, i: int) -> np.ndarray:
        row = self._rows[i]
        if row is None:
            raise LookupError(f"frame {i} of this ticket was not rendered")
        return row

    @property
    def outputs(self) -> np.ndarray:
        """(size, 3, 96, 96): every frame's result, zeros where it was not rendered."""
        if not self.size:
            return np.zeros((0, *OUT_SHAPE), np.float32)
        zeros = np.zeros(OUT_SHAPE, np.float32)
        return np.stack([zeros if row is None else row for row in self._rows])

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def add_done_callback(self, fn: Callable[[RenderTicket], None]) -> None:
        """Call ``fn(ticket)`` once it is ready: at once if it is, else on the thread that settles its last frame."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(fn)
                return
        fn(self)

    async def wait_async(self) -> RenderTicket:
        """Await readiness from an event loop without blocking it (the asyncio side of the threaded driver)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[RenderTicket] = loop.create_future()

        def wake(ticket: RenderTicket) -> None:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(ticket))

        self.add_done_callback(wake)
        return await done

    def _settle_one(self, now: float) -> None:
        self._left -= 1
        if self._left <= 0:
            self.finished = now
            with self._lock:
                self._event.set()
                callbacks, self._callbacks = self._callbacks, []
            for fn in callbacks:
                fn(self)
