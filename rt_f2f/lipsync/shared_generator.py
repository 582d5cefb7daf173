"""The threaded driver around ``batcher.BatchCore``: one thread runs the chosen batches on the real generator.

Streams hold a ``GeneratorClient`` as their backend: it has ``submit`` (a ``RenderTicket`` at once, for the
non-blocking path) and ``infer`` (for callers that want to block). The policy itself lives in ``batcher``; this
module adds only the thread, the condition variable and the wake-up slack it learns from its own late wake-ups.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable
from typing import Protocol

import numpy as np

from .backends import FACE_SHAPE, MEL_SHAPE
from .batcher import BatchCore, BatcherStats, Clock, StreamCounts
from .costmodel import CostModel
from .ticket import RenderTicket

log = logging.getLogger(__name__)

MAX_WAKE_SLACK = 0.05  # seconds: the most margin the driver adds for its own late wake-ups
WAKE_SLACK_DECAY = 0.98  # per timed wait: the learned slack halves over ~35 punctual wake-ups


class Generator(Protocol):
    """What the shared generator runs: a ``LipSyncBackend`` or anything with the same ``infer``."""

    name: str
    max_batch: int

    def infer(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray: ...


class SharedGenerator:
    """One generator, one thread running its batches, any number of streams (threads) submitting frames.

    ``calibrate`` runs batches of 1, ``max_batch / 4`` and ``max_batch`` frames before serving, so the first
    deadlines are planned with measured costs rather than guesses; ``cost`` hands over a model already learned (by
    an earlier shared generator on the same backend), which it goes on learning. Use as a context manager, or call
    ``close``.
    """

    def __init__(
        self,
        backend: Generator,
        max_batch: int | None = None,
        clock: Clock = time.monotonic,
        margin_s: float = 0.002,
        max_wait_s: float | None = None,
        calibrate: bool = True,
        cost: CostModel | None = None,
    ) -> None:
        self.backend = backend
        self.max_batch = int(max_batch or backend.max_batch)
        self.clock = clock
        self.core = BatchCore(self.max_batch, cost or CostModel(), clock, margin_s, max_wait_s)
        self.base_margin_s = margin_s
        self.wake_slack = 0.0  # learned: how late the driver thread has been waking (see learn_wake)
        self._cond = threading.Condition()
        self._closed = False
        if calibrate:
            self.calibrate()
        self._thread = threading.Thread(target=self._loop, name="rt-f2f-shared-generator", daemon=True)
        self._thread.start()

    def calibrate(self, sizes: tuple[int, ...] | None = None, repeat: int = 2) -> None:
        """Time the generator at a few batch sizes (the first run of each is a warm-up and is not learned)."""
        sizes = sizes or tuple(sorted({1, max(1, self.max_batch // 4), self.max_batch}))
        for n in sizes:
            mel = np.zeros((n, *MEL_SHAPE), np.float32)
            faces = np.zeros((n, *FACE_SHAPE), np.float32)
            for k in range(repeat):
                start = self.clock()
                self.backend.infer(mel, faces)
                if k:
                    self.core.cost.observe(n, self.clock() - start)

    @property
    def stats(self) -> BatcherStats:
        return self.core.stats

    def client(self, budget_s: float, stream: Hashable | None = None, required: bool = False) -> GeneratorClient:
        """A backend for one stream: its frames are due back ``budget_s`` after they are submitted (``required``:
        rendered however late, never skipped; for a recording, where every frame counts and none is live)."""
        return GeneratorClient(self, budget_s, stream, required)

    def submit(
        self, stream: Hashable, mel: np.ndarray, faces: np.ndarray, deadline: float, required: bool = False
    ) -> RenderTicket:
        if self._closed:
            raise RuntimeError("the shared generator is closed")
        with self._cond:
            ticket = self.core.submit(stream, mel, faces, deadline, required=required)
            self._cond.notify()
        return ticket

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        self.core.abandon()
                        return
                    batch = self.core.take()
                    if batch is not None:
                        break
                    wait = self.core.wait_time()
                    if wait is None:
                        self._cond.wait()
                        continue
                    target = self.clock() + wait
                    if not self._cond.wait(timeout=max(wait, 1e-4)):  # timed out: it meant to be back at target
                        self.learn_wake(self.clock() - target)
            try:
                outputs = self.backend.infer(batch.mel, batch.faces)
            except Exception as exc:  # the error goes to every stream in the batch; the generator serves on
                log.exception("shared generator batch of %d failed", len(batch))
                with self._cond:
                    self.core.fail(batch, exc)
                continue
            with self._cond:
                self.core.finish(batch, outputs)

    def learn_wake(self, late: float) -> None:
        """Widen the core's margin by how late this thread wakes (a decaying maximum, at most ``MAX_WAKE_SLACK``).

        A batch is started at the latest moment its deadlines allow, so a driver that oversleeps (a busy host, the
        GIL held by stream threads) would make frames miss: the margin grows to what the host has been showing."""
        self.wake_slack = min(MAX_WAKE_SLACK, max(late, self.wake_slack * WAKE_SLACK_DECAY))
        self.core.margin_s = self.base_margin_s + self.wake_slack

    def close(self) -> None:
        """Stop after the batch in flight; frames still pending are skipped (counted)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def __enter__(self) -> SharedGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GeneratorClient:
    """One stream's handle on a ``SharedGenerator``: looks like a backend (``name``, ``max_batch``, ``infer``) and
    adds ``submit``, which ``LipSyncStream`` uses to hand frames over without waiting for them."""

    def __init__(
        self, shared: SharedGenerator, budget_s: float, stream: Hashable | None = None, required: bool = False
    ) -> None:
        if not budget_s > 0:
            raise ValueError("budget_s must be > 0")
        self.shared = shared
        self.required = required
        self.budget_s = float(budget_s)
        self.stream = stream if stream is not None else id(self)
        self.name = f"shared:{shared.backend.name}"
        self.max_batch = shared.max_batch

    def close(self) -> StreamCounts | None:
        """The stream is done: its counts leave the shared statistics (returned, for its own report)."""
        with self.shared._cond:
            return self.shared.core.forget(self.stream)

    def submit(self, mel: np.ndarray, faces: np.ndarray) -> RenderTicket:
        return self.shared.submit(self.stream, mel, faces, self.shared.clock() + self.budget_s, self.required)

    def infer(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Blocking and never skipped: planned with this client's budget, but rendered however late it gets."""
        ticket = self.shared.submit(self.stream, mel, faces, self.shared.clock() + self.budget_s, required=True)
        ticket.wait()
        if ticket.error is not None:
            raise ticket.error
        return ticket.outputs
