"""The A/V scheduler: places translated speech and source video on one output clock with bounded delay.

The output clock runs ``delay`` (D) seconds behind the input clock: the face captured at t is shown at t + D, and
translated speech is placed as early as its source words allow, ``start = max(source start + D, end of the speech
before it, what is already committed)``. Stages upstream are slow and bursty, so speech can queue up; delay must not
creep (aiortc's decoded-frame queue is unbounded, which is how calls end up seconds behind). When the queue would
push speech past ``max_delay`` (D_max) the scheduler plays it faster (pitch-preserving WSOLA, at most
``max_rate``; the TTS upstream already speaks faster when the listener falls behind, which sounds better). Nothing
said is lost by default: speech that would pass D_max even at ``max_rate`` is still played, as early as it can be,
and recorded as ``OVER_BOUND``; the delay then comes back down as the compression catches up. Dropping is an explicit
live policy: with ``drop_after`` set (a bound the user chose, at least D_max), whole clauses that have not started and
would pass it are dropped, oldest first (in a live conversation the newest words matter most), and a clause is never
cut once it is playing. Lateness is never hidden behind made-up silence; every placement, compression, overrun,
drop, late start and underrun is recorded as a ``SchedulerDecision``.

Time is virtual: callers pass the wall time of each arrival and of each ``pull``, so the core is a plain
synchronous object that tests drive without sleeping. ``RealtimeScheduler`` paces it on a monotonic clock.

Output units: audio in fixed blocks (``block`` seconds, 20 ms by default, the WebRTC frame size) on a sample grid at
``sample_rate``; video on a frame grid at ``fps``, each frame tagged with the span of output audio that plays with
it, so the lip-sync stage can re-render the mouth for exactly that audio. Output pts are seconds on the output
clock: output pts X plays at wall ``origin + X``.

Video goes onto the output frame grid in ``slots.VideoSlots`` (A/V offset measured there, ITU-R BT.1359); a
clause's own audio and estimates live in ``clause.ClauseState``; the types it emits and reports are in
``schedule``, and its drivers (virtual time, monotonic clock) in ``realtime``.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from ..audio import resample
from ..frames import AudioChunk, SpeechChunk, VideoFrame
from .clause import ClauseState, check_chunk, source_span
from .schedule import (
    ClauseTiming,
    DecisionKind,
    ScheduledAudio,
    ScheduledItem,
    ScheduledVideo,
    SchedulerConfig,
    SchedulerDecision,
    SchedulerMetrics,
)
from .slots import VideoSlots, check_frame


class AVScheduler:
    """Synchronous core: push inputs with their arrival wall time, ``pull(now)`` for what is due."""

    def __init__(self, config: SchedulerConfig | None = None, origin_wall: float | None = None) -> None:
        self.config = config or SchedulerConfig()
        cfg = self.config
        self.origin_wall = origin_wall  # wall time of session time 0; inferred from the first input if None
        self._sr = cfg.sample_rate
        self._block_n = max(1, int(round(cfg.block * self._sr)))
        self._start_n = int(round(cfg.delay * self._sr))  # output audio starts at output pts D (session time 0)
        self._emitted_n = self._start_n  # next output sample to emit
        self._queue: deque[ClauseState] = deque()
        self._by_id: dict[int, ClauseState] = {}
        self._closed_ids: set[int] = set()
        self._closed_order: deque[int] = deque()
        self._rate = 1.0
        self._ratio = 1.0  # translated / source duration, learnt from complete clauses
        self._spans: deque[tuple[int, int, int]] = deque(maxlen=64)  # (clause id, start, end) of finished clauses
        self._clauses: list[ClauseTiming] = []
        self._decisions: list[SchedulerDecision] = []
        self._chunks_ignored = 0
        self._video = VideoSlots(cfg)

    # ------------------------------------------------------------------ inputs

    def push_speech(self, chunk: SpeechChunk, arrival_wall: float) -> None:
        """A translated speech chunk arrived at ``arrival_wall``."""
        cfg = self.config
        samples, rate = check_chunk(chunk, arrival_wall)
        start, end = source_span(chunk)
        if self.origin_wall is None:
            self.origin_wall = arrival_wall - end  # the clause was spoken before it arrived
        cid = chunk.translation.source.clause_id
        if cid in self._closed_ids:
            self._chunks_ignored += 1  # its clause was dropped, or has played to its end
            return
        clause = self._by_id.get(cid)
        playout = arrival_wall - self.origin_wall
        if clause is None and end > playout + cfg.max_future:
            # Words cannot end after they were heard: a clause from the future would block every clause behind it.
            self._chunks_ignored += 1
            self._decisions.append(
                SchedulerDecision(
                    DecisionKind.DROP, cid, self.audio_horizon, start, None, None, self._rate,
                    f"source words end at {end:.2f} s, after the session clock ({playout:.2f} s): bad word times",
                )
            )  # fmt: skip
            self._close_id(cid)
            return
        if clause is None:
            clause = self._open(cid, start, end, rate)
            clause.not_before_n = int(math.floor((playout + cfg.lead + cfg.audio_lookahead) * self._sr))
        elif clause.complete:
            self._chunks_ignored += 1  # a chunk after the clause's last one
            return
        if rate != clause.sample_rate:
            samples = resample(samples, rate, clause.sample_rate)
        chunk_last = chunk.last
        limit = int(self.config.max_clause_seconds * clause.sample_rate)
        if clause.received + samples.size > limit:
            # Untrusted input is bounded: a clause this long means a broken stage upstream.
            if not clause.started:
                self._drop(clause, f"clause longer than max_clause_seconds ({self.config.max_clause_seconds} s)")
                return
            samples = samples[: max(limit - clause.received, 0)]
            self._decide(
                DecisionKind.TRUNCATE, clause, None, "clause longer than max_clause_seconds: its rest is discarded"
            )
            chunk_last = True
        clause.received += samples.size
        if clause.started:
            self._render(clause, samples)
        else:
            clause.pending.append(samples)
        if chunk_last:
            clause.complete = True
            self._learn_ratio(clause)
            if clause.started:
                self._finish_render(clause)
        self._bound_pending()
        self._plan(self._emitted_n)

    def push_video(self, frame: VideoFrame, arrival_wall: float) -> None:
        """A source video frame arrived at ``arrival_wall``."""
        check_frame(frame, arrival_wall)
        if self.origin_wall is None:
            self.origin_wall = arrival_wall - frame.pts
        self._video.push(frame, arrival_wall, arrival_wall - self.origin_wall)

    def note_audio_clock(self, pts: float, arrival_wall: float) -> None:
        """Optional: arrivals of the raw input audio, so video drift is measured against the audio clock."""
        if math.isfinite(pts) and math.isfinite(arrival_wall):
            self._video.mapper.note_audio(pts, arrival_wall)

    # ------------------------------------------------------------------ outputs

    def pull(self, now_wall: float) -> list[ScheduledItem]:
        """Everything due by ``now_wall`` (plus the configured lead), in output pts order."""
        if self.origin_wall is None:
            return []
        cfg = self.config
        playout = now_wall - self.origin_wall  # output pts playing now
        audio_until = int(math.floor((playout + cfg.lead + cfg.audio_lookahead) * self._sr))
        items: list[ScheduledItem] = list(self._emit_audio(audio_until))
        due = math.floor((playout + cfg.lead - cfg.delay) * cfg.fps + 1e-9)
        first = math.ceil((playout - cfg.delay) * cfg.fps - 1e-9)  # slots before this are past their playout
        items.extend(self._video.emit(due, first, self._clauses_in))
        items.sort(key=lambda item: (item.pts, isinstance(item, ScheduledVideo)))
        return items

    def flush(self) -> list[ScheduledItem]:
        """End of input: play out everything held (still under the delay bound), then stop."""
        for clause in list(self._queue):
            clause.complete = True
            if clause.started:
                self._finish_render(clause)
        self._plan(self._emitted_n)
        items: list[ScheduledItem] = []
        while self._queue:
            items.extend(self._emit_audio(self._emitted_n + self._block_n))
        cfg = self.config
        end_out = self._emitted_n / self._sr
        slots = self._video
        if slots.frames or slots.next_slot is not None:
            last = max(slots.frames) if slots.frames else slots.next_slot - 1
            speech_slot = math.ceil((end_out - cfg.delay) * cfg.fps) - 1 if self._clauses else last
            video = slots.emit(max(last, speech_slot), min(slots.frames, default=0), self._clauses_in)
            if video:
                end_out = max(end_out, video[-1].pts + 1.0 / cfg.fps)
                items.extend(self._emit_audio(int(math.ceil(end_out * self._sr)) + self._block_n - 1))
                items.extend(video)
        items.sort(key=lambda item: (item.pts, isinstance(item, ScheduledVideo)))
        return items

    def metrics(self) -> SchedulerMetrics:
        return SchedulerMetrics(
            clauses=list(self._clauses),
            decisions=list(self._decisions),
            video_received=self._video.received,
            video_shown=self._video.shown,
            video_repeated=self._video.repeated,
            video_dropped=dict(self._video.dropped),
            video_buffered=len(self._video.frames),
            av_offsets=np.array(self._video.av_offsets, dtype=float),
            chunks_ignored=self._chunks_ignored,
            audio_out_seconds=(self._emitted_n - self._start_n) / self._sr,
            drift_ppm=self._video.mapper.drift_ppm,
            drift_correction=self._video.mapper.correction,
            config=self.config,
        )

    @property
    def audio_horizon(self) -> float:
        """Output pts up to which audio is committed: speech can never be placed before it."""
        return self._emitted_n / self._sr

    @property
    def rate(self) -> float:
        """The compression rate the current plan applies to speech rendered from now on."""
        return self._rate

    # ------------------------------------------------------------------ speech: admission and planning

    def _open(self, cid: int, start: float, end: float, rate: int) -> ClauseState:
        cfg = self.config
        while len(self._queue) >= cfg.max_pending_clauses and self._drop_oldest_waiting("too many clauses waiting"):
            pass
        clause = ClauseState.open(cid, start, end, rate, self._sr, cfg.stretch_frame)
        self._queue.append(clause)
        self._by_id[cid] = clause
        return clause

    def _learn_ratio(self, clause: ClauseState) -> None:
        """Translated speech is longer or shorter than its source by a language-pair factor; learn it."""
        source = clause.source_end - clause.source_start
        if source >= 0.3 and clause.received:
            ratio = clause.received / clause.sample_rate / source
            self._ratio = min(max(0.7 * self._ratio + 0.3 * ratio, 0.3), 3.0)

    def _bound_pending(self) -> None:
        limit = self.config.max_pending_seconds
        while sum(c.pending_seconds for c in self._queue if not c.started) > limit:
            if not self._drop_oldest_waiting("too much speech waiting (max_pending_seconds)"):
                break

    def _drop_oldest_waiting(self, reason: str) -> bool:
        for clause in self._queue:
            if not clause.started:
                self._drop(clause, reason)
                return True
        return False

    def _earliest_n(self, clause: ClauseState) -> int:
        return max(int(round((clause.source_start + self.config.delay) * self._sr)), clause.not_before_n)

    def _violation(self, clause: ClauseState, start: float, end: float, limit: float | None = None) -> str | None:
        limit = self.config.max_delay if limit is None else limit
        bound = limit * self._sr
        if start - clause.source_start * self._sr > bound + 1e-6:
            return f"would start {(start / self._sr - clause.source_start):.2f} s after its source (bound {limit} s)"
        if end - clause.source_end * self._sr > bound + 1e-6:
            return f"would end {(end / self._sr - clause.source_end):.2f} s after its source (bound {limit} s)"
        return None

    def _check(self, cursor: int, rate: float, limit: float | None = None) -> tuple[ClauseState, str] | None:
        """First not-started clause that breaks the bound (``limit``, default max_delay) when all speech from now on
        plays at ``rate``."""
        t = float(cursor)
        for clause in self._queue:
            if clause.started:
                t = max(t, clause.end_n(rate, self._ratio, self._sr))
                continue
            start = max(float(self._earliest_n(clause)), t)
            end = start + clause.duration_n(rate, self._ratio, self._sr)
            reason = self._violation(clause, start, end, limit)
            if reason is not None:
                return clause, reason
            t = end
        return None

    def _plan(self, cursor: int) -> None:
        """Pick the lowest rate that keeps every waiting clause within max_delay. If none does, play at max_rate
        and keep the late clauses (recorded as over the bound), or, under an explicit ``drop_after`` policy, drop
        the clauses that would pass that bound and retry."""
        cfg = self.config
        while True:
            if self._check(cursor, 1.0) is None:
                self._rate = 1.0
                return
            failure = self._check(cursor, cfg.max_rate)
            if failure is None:
                lo, hi = 1.0, cfg.max_rate
                while hi - lo > 0.005:
                    mid = 0.5 * (lo + hi)
                    lo, hi = (lo, mid) if self._check(cursor, mid) is None else (mid, hi)
                self._rate = hi
                return
            self._rate = cfg.max_rate
            if cfg.drop_after is not None:
                failure = self._check(cursor, cfg.max_rate, cfg.drop_after) or self._note_over(failure)
            else:
                failure = self._note_over(failure)
            if failure is None:
                return
            culprit, reason = failure
            if self._fails_alone(culprit, cursor):
                self._drop(culprit, f"{reason} even at {cfg.max_rate}x with nothing queued before it")
            else:
                oldest = next(c for c in self._queue if not c.started)
                why = f"clause {culprit.clause_id} {reason} at {cfg.max_rate}x: dropping the oldest waiting clause"
                self._drop(oldest, why)

    def _note_over(self, failure: tuple[ClauseState, str]) -> tuple[ClauseState, str] | None:
        """A clause will pass max_delay even at max_rate and is kept: record it once (and nothing to drop)."""
        clause, reason = failure
        if not clause.over_bound:
            clause.over_bound = True
            why = f"{reason} at {self.config.max_rate}x: kept, played late"
            self._decide(DecisionKind.OVER_BOUND, clause, self.config.max_rate, why)
        return None

    def _fails_alone(self, clause: ClauseState, cursor: int) -> bool:
        rate = self.config.max_rate
        t = float(cursor)
        playing = self._queue[0] if self._queue and self._queue[0].started else None
        if playing is not None:
            t = max(t, playing.end_n(rate, self._ratio, self._sr))
        start = max(float(self._earliest_n(clause)), t)
        end = start + clause.duration_n(rate, self._ratio, self._sr)
        return self._violation(clause, start, end, self.config.drop_after) is not None

    def _drop(self, clause: ClauseState, reason: str) -> None:
        self._queue.remove(clause)
        self._close(clause)
        planned = max(self._earliest_n(clause), self._emitted_n) / self._sr
        self._decide(DecisionKind.DROP, clause, None, reason, start=planned)

    def _close(self, clause: ClauseState) -> None:
        self._by_id.pop(clause.clause_id, None)
        self._close_id(clause.clause_id)

    def _close_id(self, cid: int) -> None:
        self._closed_ids.add(cid)
        self._closed_order.append(cid)
        while len(self._closed_order) > 4096:
            self._closed_ids.discard(self._closed_order.popleft())

    def _decide(
        self,
        kind: DecisionKind,
        clause: ClauseState,
        rate: float | None,
        reason: str,
        at_n: int | None = None,
        start: float | None = None,
    ) -> None:
        """Record a decision; ``start`` is the clause's output start (default: where it started, if it has)."""
        if start is None and clause.started:
            start = clause.start_n / self._sr
        self._decisions.append(
            SchedulerDecision(
                kind,
                clause.clause_id,
                (self._emitted_n if at_n is None else at_n) / self._sr,
                clause.source_start,
                start,
                None if start is None else start - clause.source_start,
                self._rate if rate is None else rate,
                reason,
            )
        )

    # ------------------------------------------------------------------ speech: rendering and emission

    def _start(self, clause: ClauseState, start_n: int) -> None:
        clause.started = True
        clause.complete_at_start = clause.complete
        clause.start_n = clause.write_n = start_n
        late = start_n / self._sr - (clause.source_start + self.config.delay)
        self._decide(DecisionKind.PLACE, clause, self._rate, f"starts {late:+.3f} s from source + D")
        if late > self.config.late_tolerance:
            self._decide(DecisionKind.LATE, clause, self._rate, f"{late:.3f} s late: speech arrived or queued late")
        pending, clause.pending = clause.pending, []
        for samples in pending:
            self._render(clause, samples)
        if clause.complete:
            self._finish_render(clause)

    def _render(self, clause: ClauseState, samples: np.ndarray) -> None:
        if self._rate != clause.stretch.rate:
            clause.stretch.set_rate(self._rate)
            if self._rate > clause.rate:
                clause.rate = self._rate
                self._decide(DecisionKind.COMPRESS, clause, self._rate, "backlog would pass max_delay")
        clause.append(clause.resampler.process(clause.stretch.process(samples)))

    def _finish_render(self, clause: ClauseState) -> None:
        if clause.finished:
            return
        tail = clause.resampler.process(clause.stretch.flush())
        clause.append(np.concatenate([tail, clause.resampler.flush()]))
        clause.finished = True

    def _emit_audio(self, until_n: int) -> list[ScheduledAudio]:
        out: list[ScheduledAudio] = []
        while self._emitted_n + self._block_n <= until_n:
            out.append(self._emit_block())
        return out

    def _emit_block(self) -> ScheduledAudio:
        n, end = self._emitted_n, self._emitted_n + self._block_n
        block = np.zeros(self._block_n, np.float32)
        ids: list[int] = []
        pos = n
        while pos < end and self._queue:
            clause = self._queue[0]
            if not clause.started:
                self._plan(pos)
                if not self._queue:
                    break
                clause = self._queue[0]
                if not clause.started:
                    start = max(self._earliest_n(clause), pos)
                    if start >= end:
                        break
                    self._start(clause, start)
            ids.append(clause.clause_id)
            clause.copy_into(block, n, end)
            if clause.write_n >= end:
                pos = end
            elif clause.finished:
                pos = max(pos, clause.write_n)
                self._retire(clause)
            else:
                gap_from = max(pos, clause.write_n)
                clause.gap_n += end - gap_from
                clause.write_n = end
                if not clause.underrunning:
                    clause.underrunning = True
                    self._decide(DecisionKind.UNDERRUN, clause, None, "playing clause ran out of audio", gap_from)
                pos = end
        self._emitted_n = end
        chunk = AudioChunk(block, self._sr, n / self._sr, source="scheduler")
        return ScheduledAudio(chunk, tuple(dict.fromkeys(ids)))

    def _retire(self, clause: ClauseState) -> None:
        self._queue.popleft()
        self._close(clause)
        self._spans.append((clause.clause_id, clause.start_n, clause.write_n))
        self._clauses.append(clause.timing(self._sr))

    def _clauses_in(self, lo: float, hi: float) -> tuple[int, ...]:
        a, b = lo * self._sr, hi * self._sr
        ids = [cid for cid, start, end in self._spans if start < b and end > a]
        ids += [c.clause_id for c in self._queue if c.started and c.start_n < b and c.write_n > a]
        return tuple(ids)
