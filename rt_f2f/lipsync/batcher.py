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

``BatchCore`` (this module) holds the policy: no threads, no I/O, time from an injected clock, so it is tested with
a fake clock and a fake slow generator. It learns batch costs with ``costmodel.CostModel`` and settles frames on
``ticket.RenderTicket``s. ``shared_generator.SharedGenerator`` is the thin threaded driver: one thread runs the
batches on the real backend, streams hold a ``GeneratorClient`` as their backend (it has ``submit`` for the
non-blocking path and ``infer`` for callers that want to block).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from .backends import OUT_SHAPE, check_inputs
from .costmodel import CostModel
from .ticket import RenderTicket

Clock = Callable[[], float]
_EPS = 1e-9  # clock arithmetic slack: a frame finishing a nanosecond past its deadline is on time


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
