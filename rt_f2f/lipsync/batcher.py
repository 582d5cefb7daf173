"""Cross-stream batching: one Wav2Lip generator serving many ``LipSyncStream``s, batches formed by deadline.

A GPU runs the generator far more cheaply per frame in large batches, but one 25-fps stream offers one frame every
40 ms. So the frames of many streams are pooled: each frame comes with a deadline (when its stream needs it back),
and a batch is started only when waiting any longer would make some frame miss its deadline, or when the batch is
full. The cost of a batch of ``n`` frames is learned from the batches that ran (``CostModel``), so the batcher knows
how long it may wait. A frame that cannot be rendered by its deadline even if started now is skipped, and counted:
its stream shows it with the original mouth (a late mouth is worth less than a frame on time).

Fairness: when more frames wait than fit in a batch, each stream with frames waiting first gets an equal share of
the batch (earliest deadlines first within it), and only then is the rest filled by deadline; so a stream that
floods the batcher (a flush, a stream with a long budget) cannot crowd the others out. When the generator is
overloaded (the frames waiting cannot all make their deadlines), the frames to skip are taken from the streams that
have lost the smallest share of their frames so far, one per stream in turn: otherwise the streams whose frames
happen to arrive just before a batch starts would lose every frame while the others lost none.

``BatchCore`` holds the policy: no threads, no I/O, time from an injected clock, so it is tested with a fake clock
and a fake slow generator. ``SharedGenerator`` is the thin threaded driver: one thread runs the batches on the real
backend, streams hold a ``GeneratorClient`` as their backend (it has ``submit`` for the non-blocking path and
``infer`` for callers that want to block).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .backends import FACE_SHAPE, MEL_SHAPE, OUT_SHAPE, check_inputs

log = logging.getLogger(__name__)

Clock = Callable[[], float]
MAX_WAKE_SLACK = 0.05  # seconds: the most margin the driver adds for its own late wake-ups
WAKE_SLACK_DECAY = 0.98  # per timed wait: the learned slack halves over ~35 punctual wake-ups
_EPS = 1e-9  # clock arithmetic slack: a frame finishing a nanosecond past its deadline is on time


class Generator(Protocol):
    """What the shared generator runs: a ``LipSyncBackend`` or anything with the same ``infer``."""

    name: str
    max_batch: int

    def infer(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray: ...


@dataclass
class CostModel:
    """Seconds one generator batch of ``n`` frames takes, learned per batch size from the batches that ran.

    Before any batch of a size has run, the estimate interpolates between the sizes that did (and beyond the
    largest, extends the last slope); below the smallest it takes the smallest's cost: an over-estimate only starts
    a batch a little early, an under-estimate makes frames late. With nothing observed, ``fixed + per_frame * n``.
    """

    fixed: float = 0.0
    per_frame: float = 0.0
    alpha: float = 0.3  # weight of a new observation in the running average of its size
    _sizes: list[int] = field(default_factory=list)  # sorted batch sizes observed
    _cost: dict[int, float] = field(default_factory=dict)

    @property
    def observed(self) -> list[int]:
        """Batch sizes whose cost has been measured, smallest first."""
        return list(self._sizes)

    def observe(self, n: int, seconds: float) -> None:
        if n < 1 or not math.isfinite(seconds) or seconds < 0:
            return
        if n in self._cost:
            self._cost[n] += self.alpha * (seconds - self._cost[n])
        else:
            bisect.insort(self._sizes, n)
            self._cost[n] = seconds

    def estimate(self, n: int) -> float:
        if n < 1:
            return 0.0
        sizes = self._sizes
        if not sizes:
            return self.fixed + self.per_frame * n
        if n in self._cost:
            return self._cost[n]
        i = bisect.bisect_left(sizes, n)
        if i == 0:
            return self._cost[sizes[0]]
        if i == len(sizes):
            last = self._cost[sizes[-1]]
            if len(sizes) == 1:
                return last * n / sizes[-1]
            slope = max(0.0, (last - self._cost[sizes[-2]]) / (sizes[-1] - sizes[-2]))
            return last + slope * (n - sizes[-1])
        lo, hi = sizes[i - 1], sizes[i]
        return self._cost[lo] + (self._cost[hi] - self._cost[lo]) * (n - lo) / (hi - lo)


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


@dataclass
class _Item:
    ticket: RenderTicket
    index: int  # frame within its ticket
    deadline: float
    seq: int  # submission order: ties in deadline go first-come

    @property
    def key(self) -> tuple[float, int]:
        return (self.deadline, self.seq)


@dataclass
class Batch:
    """Frames the core chose to run now, with their inputs stacked in the same order."""

    items: list[_Item]
    mel: np.ndarray
    faces: np.ndarray
    started: float
    estimate: float  # the cost model's seconds for this batch when it was chosen

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class StreamCounts:
    submitted: int = 0
    rendered: int = 0
    skipped_late: int = 0
    failed: int = 0
    late: int = 0  # rendered, but the batch ran past the frame's deadline (the cost model under-estimated)


@dataclass
class BatcherStats:
    """Every frame submitted is rendered, skipped late, failed, or still pending / in flight."""

    submitted: int = 0
    rendered: int = 0
    skipped_late: int = 0
    failed: int = 0
    late: int = 0
    batches: int = 0
    batch_frames: int = 0
    batch_size_counts: dict[int, int] = field(default_factory=dict)
    busy_seconds: float = 0.0
    streams: dict[Hashable, StreamCounts] = field(default_factory=dict)

    @property
    def mean_batch(self) -> float:
        return self.batch_frames / self.batches if self.batches else 0.0


class BatchCore:
    """The batching policy, driven by a caller that owns the generator (see ``SharedGenerator``).

    ``submit`` queues frames with a deadline; ``take`` returns the batch to run now, or None (``wait_time`` says how
    long it may wait); ``finish`` / ``fail`` settle a batch. ``margin_s`` is slack kept before the latest start, for
    the driver's own delay in waking up. ``max_wait_s`` (optional) starts a batch once its oldest frame has waited
    that long even if deadlines would allow more waiting: lower latency when the generator has room to spare.
    """

    def __init__(
        self,
        max_batch: int,
        cost: CostModel | None = None,
        clock: Clock = time.monotonic,
        margin_s: float = 0.002,
        max_wait_s: float | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.max_batch = int(max_batch)
        self.cost = cost or CostModel()
        self.clock = clock
        self.margin_s = margin_s
        self.max_wait_s = max_wait_s
        self.stats = BatcherStats()
        self._pending: list[_Item] = []  # kept sorted by (deadline, submission order)
        self._seq = 0
        self.in_flight = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _counts(self, stream: Hashable) -> StreamCounts:
        return self.stats.streams.setdefault(stream, StreamCounts())

    def submit(
        self,
        stream: Hashable,
        mel: np.ndarray,
        faces: np.ndarray,
        deadline: float,
        now: float | None = None,
        required: bool = False,
    ) -> RenderTicket:
        """Queue one stream's frames (mel (B, 1, 80, 16), faces (B, 6, 96, 96)), all due back by ``deadline``.

        ``required`` frames are planned by their deadline like the others but never skipped."""
        mel, faces = check_inputs(mel, faces)
        now = self.clock() if now is None else now
        if not math.isfinite(deadline):
            raise ValueError("a deadline must be finite (it decides when the batch starts)")
        ticket = RenderTicket(stream, mel, faces, float(deadline), now, required)
        counts = self._counts(stream)
        counts.submitted += len(mel)
        self.stats.submitted += len(mel)
        for i in range(len(mel)):
            bisect.insort(self._pending, _Item(ticket, i, float(deadline), self._seq), key=_Item.key.fget)
            self._seq += 1
        return ticket

    # -- deciding ------------------------------------------------------------------------------------------------
    def latest_start(self) -> float:
        """The latest clock time the pending frames can wait for: batches run back to back, earliest deadline
        first, each full but the last, and the start must leave every batch time to finish by its first deadline."""
        if not self._pending:
            return math.inf
        order = self._pending
        start, elapsed = math.inf, 0.0
        for k in range(0, len(order), self.max_batch):
            chunk = order[k : k + self.max_batch]
            elapsed += self.cost.estimate(len(chunk))
            start = min(start, chunk[0].deadline - elapsed)
        return start

    def wait_time(self, now: float | None = None) -> float | None:
        """Seconds until a batch must start (0: now), or None with nothing pending."""
        if not self._pending:
            return None
        now = self.clock() if now is None else now
        due = self.latest_start() - self.margin_s
        if self.max_wait_s is not None:
            due = min(due, min(it.ticket.submitted for it in self._pending) + self.max_wait_s)
        if len(self._pending) >= self.max_batch:
            due = now
        return max(0.0, due - now)

    def _skip(self, items: list[_Item], now: float) -> None:
        for it in items:
            self._counts(it.ticket.stream).skipped_late += 1
            self.stats.skipped_late += 1
            self._release(it.ticket)
            it.ticket._settle_one(now)

    @staticmethod
    def _release(ticket: RenderTicket) -> None:
        """Drop the ticket's inputs once none of its frames is pending (they are a few hundred kB per frame)."""
        ticket._unbatched -= 1
        if ticket._unbatched == 0:
            ticket.mel = ticket.faces = None

    def _drop_hopeless(self, now: float) -> None:
        """Skip frames that would be late even alone in a batch started now."""
        alone = self.cost.estimate(1)
        hopeless = [it for it in self._pending if now + alone > it.deadline and not it.ticket.required]
        if hopeless:
            gone = {id(it) for it in hopeless}
            self._pending = [it for it in self._pending if id(it) not in gone]
            self._skip(hopeless, now)

    def _loss(self, stream: Hashable) -> float:
        counts = self.stats.streams.get(stream)
        return counts.skipped_late / counts.submitted if counts and counts.submitted else 0.0

    def forget(self, stream: Hashable) -> StreamCounts | None:
        """Drop a finished stream's counts (the totals keep them), so a long-running server's stats stay bounded."""
        return self.stats.streams.pop(stream, None)

    def _shed(self, now: float) -> None:
        """Overload: skip just enough frames, fairly, that the rest make their deadlines run back to back from now."""
        while True:
            order = self._pending
            elapsed, horizon, n_late = 0.0, 0, 0
            for k in range(0, len(order), self.max_batch):
                chunk = order[k : k + self.max_batch]
                elapsed += self.cost.estimate(len(chunk))
                late = sum(now + elapsed > it.deadline for it in chunk)
                if late:
                    horizon, n_late = k + len(chunk), n_late + late
            if not n_late:
                return
            first: dict[Hashable, _Item] = {}  # per stream, its latest-deadline frame inside the horizon
            for it in order[:horizon]:
                if not it.ticket.required:
                    first[it.ticket.stream] = it
            if not first:
                return
            victims = sorted(first.values(), key=lambda it: (self._loss(it.ticket.stream), -it.deadline))[:n_late]
            gone = {id(it) for it in victims}
            self._pending = [it for it in self._pending if id(it) not in gone]
            self._skip(victims, now)

    def _select(self) -> list[_Item]:
        """Up to max_batch frames: an equal share per waiting stream first (earliest deadlines), then by deadline."""
        order = self._pending
        if len(order) <= self.max_batch:
            return order
        streams = {it.ticket.stream for it in order}
        share = max(1, self.max_batch // len(streams))
        taken: dict[Hashable, int] = {}
        chosen: list[_Item] = []
        rest: list[_Item] = []
        for it in order:
            if len(chosen) < self.max_batch and taken.get(it.ticket.stream, 0) < share:
                taken[it.ticket.stream] = taken.get(it.ticket.stream, 0) + 1
                chosen.append(it)
            else:
                rest.append(it)
        chosen += rest[: self.max_batch - len(chosen)]
        return sorted(chosen, key=lambda it: it.key)

    def take(self, now: float | None = None) -> Batch | None:
        """The batch to run now (the caller runs it, then calls ``finish``), or None: wait (see ``wait_time``)."""
        now = self.clock() if now is None else now
        self._drop_hopeless(now)
        self._shed(now)
        if not self._pending or self.wait_time(now) > 0:
            return None
        while True:
            chosen = self._select()
            estimate = self.cost.estimate(len(chosen))
            late = [it for it in chosen if now + estimate > it.deadline and not it.ticket.required]
            if not late:
                break
            # these would finish past their deadline in a batch this size: skip them, then choose again
            gone = {id(it) for it in late}
            self._pending = [it for it in self._pending if id(it) not in gone]
            self._skip(late, now)
            if not self._pending:
                return None
        gone = {id(it) for it in chosen}
        self._pending = [it for it in self._pending if id(it) not in gone]
        mel = np.stack([it.ticket.mel[it.index] for it in chosen])
        faces = np.stack([it.ticket.faces[it.index] for it in chosen])
        for it in chosen:
            self._release(it.ticket)
        self.in_flight += len(chosen)
        return Batch(chosen, mel, faces, now, estimate)

    # -- settling ------------------------------------------------------------------------------------------------
    def finish(self, batch: Batch, outputs: np.ndarray, now: float | None = None) -> list[RenderTicket]:
        """Hand a batch's outputs back to its tickets and learn its cost; returns the tickets now ready."""
        now = self.clock() if now is None else now
        outputs = np.asarray(outputs, np.float32)
        if outputs.shape != (len(batch), *OUT_SHAPE):
            return self.fail(batch, ValueError(f"generator returned {outputs.shape} for a batch of {len(batch)}"), now)
        self.in_flight -= len(batch)
        self.cost.observe(len(batch), now - batch.started)
        self.stats.batches += 1
        self.stats.batch_frames += len(batch)
        self.stats.batch_size_counts[len(batch)] = self.stats.batch_size_counts.get(len(batch), 0) + 1
        self.stats.busy_seconds += now - batch.started
        ready = []
        for it, out in zip(batch.items, outputs, strict=True):
            ticket = it.ticket
            ticket._rows[it.index] = out
            ticket.rendered[it.index] = True
            counts = self._counts(ticket.stream)
            counts.rendered += 1
            self.stats.rendered += 1
            if now > it.deadline + _EPS:
                counts.late += 1
                self.stats.late += 1
            ticket._settle_one(now)
            if ticket.ready:
                ready.append(ticket)
        return ready

    def fail(self, batch: Batch, error: BaseException, now: float | None = None) -> list[RenderTicket]:
        """The generator raised on this batch: its frames are settled unrendered and their tickets carry the error."""
        now = self.clock() if now is None else now
        self.in_flight -= len(batch)
        ready = []
        for it in batch.items:
            it.ticket.error = it.ticket.error or error
            self._counts(it.ticket.stream).failed += 1
            self.stats.failed += 1
            it.ticket._settle_one(now)
            if it.ticket.ready:
                ready.append(it.ticket)
        return ready

    def abandon(self, now: float | None = None) -> int:
        """Skip every pending frame (shutting down); returns how many."""
        now = self.clock() if now is None else now
        items, self._pending = self._pending, []
        self._skip(items, now)
        return len(items)


# --------------------------------------------------------------------------------------------------- driver


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
