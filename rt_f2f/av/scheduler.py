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

A/V offset (ITU-R BT.1359: at most 45 ms audio early, 125 ms audio late) is measured on what is emitted: a frame
captured at t (re-mapped onto the audio clock, see ``av.clock``) shows the moment whose audio the output clock plays
at t + D, so its offset is ``(t + D) - (the frame's output pts)``. Frames land on the nearest output slot, so the
offset stays within half a frame period unless a frame had to move to a neighbouring slot (bounded by
``MOVE_EARLY_LIMIT``/``MOVE_LATE_LIMIT``). Translated speech is a different matter: it has no sample-to-sample
relation with the source, so its lateness against source + D is reported separately, and each frame carries the
output span of audio it is shown with, for the lip-sync stage to render the mouth for exactly that audio.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from ..audio import StreamingResampler, resample
from ..errors import MediaError, RtF2fError
from ..frames import AudioChunk, SpeechChunk, VideoFrame
from .clock import VideoClockMapper
from .timestretch import StreamingTimeStretch

# ITU-R BT.1359: the detectability window of audio/video misalignment.
AUDIO_EARLY_LIMIT = 0.045
AUDIO_LATE_LIMIT = 0.125
# A frame displaced from its nearest output slot may take a neighbour only this far off (with margin inside the
# window above, which also has to absorb drift-estimate error).
MOVE_EARLY_LIMIT = 0.030
MOVE_LATE_LIMIT = 0.080


class DecisionKind(StrEnum):
    PLACE = "place"  # a clause started playing
    COMPRESS = "compress"  # a clause is played faster than real time
    OVER_BOUND = "over_bound"  # a clause will pass max_delay even at max_rate: kept, played late
    DROP = "drop"  # a whole clause is not played
    LATE = "late"  # a clause started after source start + D
    UNDERRUN = "underrun"  # a playing clause ran out of audio (the stage behind it is slower than real time)
    TRUNCATE = "truncate"  # a playing clause passed max_clause_seconds: a broken upstream stage, the rest is cut


@dataclass(frozen=True)
class SchedulerDecision:
    kind: DecisionKind
    clause_id: int
    at: float  # output pts of the committed horizon when the decision was taken
    source_start: float
    start_out: float | None  # output pts the clause starts at (planned, for drops)
    delay: float | None  # start_out - source_start
    rate: float
    reason: str


@dataclass(frozen=True)
class SchedulerConfig:
    delay: float = 2.0  # D: output clock = input clock + D
    max_delay: float = 4.0  # D_max: speech is compressed to start (and end) within this after its source
    drop_after: float | None = None  # explicit live policy: drop clauses that would pass this bound (None: keep all)
    sample_rate: int = 48000  # output audio rate
    fps: float = 25.0  # output video rate
    max_rate: float = 1.25  # most speech is ever sped up
    block: float = 0.02  # output audio block (20 ms = one WebRTC audio frame)
    lead: float = 0.1  # items are committed this far ahead of playout, for the stages after the scheduler
    audio_lookahead: float = 0.2  # audio is committed this far ahead of video (Wav2Lip reads ~200 ms past a frame)
    late_tolerance: float = 0.05  # a start later than source + D by more than this is recorded as LATE
    max_future: float = 2.0  # a video frame whose pts is this far ahead of the clock is bogus
    correct_drift: bool = True
    max_drift_ppm: float = 2000.0  # bound on the video clock correction
    drift_min_span: float = 10.0  # seconds of video before the drift fit is trusted
    drift_slew: float = 0.05  # the correction moves at most this many seconds per second of video
    max_pending_clauses: int = 64
    max_pending_seconds: float = 120.0  # raw speech held for clauses not yet playing
    max_clause_seconds: float = 60.0  # a longer clause is a broken upstream stage
    stretch_frame: float = 0.04

    def __post_init__(self) -> None:
        def bad(what: str, hint: str) -> RtF2fError:
            return RtF2fError(f"scheduler configuration: {what}", hint)

        numbers = {k: v for k, v in vars(self).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for key, value in numbers.items():
            if not math.isfinite(value):
                raise bad(f"{key} is {value}", "give finite numbers")
        if self.delay <= 0:
            raise bad(f"delay {self.delay} s must be positive", "the target delay is usually about 2 s")
        if self.max_delay < self.delay:
            raise bad(f"max_delay {self.max_delay} s is below delay {self.delay} s", "set max_delay >= delay")
        if self.drop_after is not None and not (math.isfinite(self.drop_after) and self.drop_after >= self.max_delay):
            raise bad(
                f"drop_after {self.drop_after} s is below max_delay {self.max_delay} s",
                "set drop_after >= max_delay, or leave it unset to keep every clause",
            )
        if not 8000 <= self.sample_rate <= 192000:
            raise bad(f"sample_rate {self.sample_rate} Hz is out of range", "use 16000, 24000 or 48000")
        if not 1 <= self.fps <= 120:
            raise bad(f"fps {self.fps} is out of range", "use the camera's frame rate, e.g. 25 or 30")
        if not 1.0 <= self.max_rate <= 2.0:
            raise bad(f"max_rate {self.max_rate} must be within [1, 2]", "1.25 keeps speech natural")
        if not 0.001 <= self.block <= 0.1:
            raise bad(f"block {self.block} s is out of range", "20 ms is the usual audio frame")
        if self.lead < 0 or self.audio_lookahead < 0 or self.lead + self.audio_lookahead >= self.delay:
            raise bad(
                f"lead {self.lead} s + audio_lookahead {self.audio_lookahead} s must be >= 0 and below delay",
                "the delay has to cover the time committed ahead of playout",
            )
        if self.max_pending_clauses < 1 or self.max_pending_seconds <= 0 or self.max_clause_seconds <= 0:
            raise bad("pending bounds must be positive", "keep the defaults unless memory is tight")


@dataclass(frozen=True)
class ScheduledAudio:
    """One output audio block; ``chunk.pts`` is on the output clock."""

    chunk: AudioChunk
    clause_ids: tuple[int, ...]

    @property
    def pts(self) -> float:
        return self.chunk.pts


@dataclass(frozen=True)
class ScheduledVideo:
    """One output video frame.

    ``frame`` is the input frame as captured (its own pts is on the camera clock); ``source_pts`` is that moment on
    the audio clock; ``audio_span`` is the output-clock span of audio that plays while this frame is on screen.
    ``av_offset`` = (output pts of the audio of the frame's source moment) - (output pts of the frame): positive
    means audio late, negative audio early. A repeated frame (``repeat``: nothing newer had arrived) is a freeze,
    not a sync error: its offset grows with the freeze and metrics count repeats separately.
    """

    frame: VideoFrame
    pts: float
    slot: int
    source_pts: float
    repeat: bool
    audio_span: tuple[float, float]
    clause_ids: tuple[int, ...]
    av_offset: float


ScheduledItem = ScheduledAudio | ScheduledVideo


@dataclass(frozen=True)
class ClauseTiming:
    """Where a clause ended up on the output clock."""

    clause_id: int
    source_start: float
    source_end: float
    start_out: float
    end_out: float
    rate: float  # highest rate any of its audio was played at
    underrun: float  # seconds of silence inside the clause while it waited for audio
    complete_at_start: bool  # all its audio had arrived when it started

    @property
    def start_delay(self) -> float:
        return self.start_out - self.source_start

    @property
    def end_delay(self) -> float:
        return self.end_out - self.source_end


@dataclass
class SchedulerMetrics:
    clauses: list[ClauseTiming]
    decisions: list[SchedulerDecision]
    video_received: int
    video_shown: int
    video_repeated: int
    video_dropped: dict[str, int]
    video_buffered: int
    av_offsets: np.ndarray  # fresh (not repeated) frames, seconds
    chunks_ignored: int
    audio_out_seconds: float
    drift_ppm: float
    drift_correction: float
    config: SchedulerConfig = field(repr=False, default_factory=SchedulerConfig)

    def delay_series(self) -> list[tuple[float, float]]:
        """(output pts, start delay) of every placed clause: the output delay over time."""
        return [(c.start_out, c.start_delay) for c in self.clauses]

    def count(self, kind: DecisionKind) -> int:
        return sum(1 for d in self.decisions if d.kind == kind)

    def summary(self) -> dict:
        def pct(values: np.ndarray, q: float) -> float | None:
            return float(np.percentile(values, q)) if values.size else None

        start = np.array([c.start_delay for c in self.clauses])
        end = np.array([c.end_delay for c in self.clauses])
        off = self.av_offsets
        in_bounds = ((off >= -AUDIO_EARLY_LIMIT) & (off <= AUDIO_LATE_LIMIT)).mean() if off.size else None
        return {
            "clauses_placed": len(self.clauses),
            "clauses_dropped": self.count(DecisionKind.DROP),
            "clauses_over_bound": len({d.clause_id for d in self.decisions if d.kind == DecisionKind.OVER_BOUND}),
            "clauses_compressed": len({d.clause_id for d in self.decisions if d.kind == DecisionKind.COMPRESS}),
            "clauses_late": self.count(DecisionKind.LATE),
            "underruns": self.count(DecisionKind.UNDERRUN),
            "start_delay_p50_s": pct(start, 50),
            "start_delay_p95_s": pct(start, 95),
            "start_delay_max_s": float(start.max()) if start.size else None,
            "end_delay_p95_s": pct(end, 95),
            "end_delay_max_s": float(end.max()) if end.size else None,
            "av_offset_p50_s": pct(off, 50),
            "av_offset_abs_p95_s": pct(np.abs(off), 95),
            "av_offset_min_s": float(off.min()) if off.size else None,
            "av_offset_max_s": float(off.max()) if off.size else None,
            "av_offset_in_bt1359": None if in_bounds is None else float(in_bounds),
            "video_received": self.video_received,
            "video_shown": self.video_shown,
            "video_repeated": self.video_repeated,
            "video_dropped": dict(self.video_dropped),
            "chunks_ignored": self.chunks_ignored,
            "audio_out_seconds": self.audio_out_seconds,
            "drift_ppm": self.drift_ppm,
            "drift_correction_s": self.drift_correction,
        }


@dataclass(eq=False)
class _Clause:
    clause_id: int
    source_start: float
    source_end: float
    sample_rate: int  # of its input audio
    stretch: StreamingTimeStretch
    resampler: StreamingResampler
    pending: list[np.ndarray] = field(default_factory=list)  # input audio not rendered yet
    received: int = 0  # input samples received
    complete: bool = False  # its last chunk arrived
    started: bool = False
    complete_at_start: bool = False
    finished: bool = False  # all its audio is rendered (stretch and resampler flushed)
    start_n: int = 0
    write_n: int = 0  # output sample where its next rendered audio goes
    gap_n: int = 0  # output samples of underrun silence inside it
    segments: deque = field(default_factory=deque)  # (output sample, rendered audio) not yet emitted
    rate: float = 1.0  # highest rate applied
    not_before_n: int = 0  # the output already committed when its first chunk arrived: it cannot start earlier
    underrunning: bool = False
    over_bound: bool = False  # recorded as passing max_delay (kept)


def _span(chunk: SpeechChunk) -> tuple[float, float]:
    """Source span of a clause: its words' times, or (for a clause without word times) the audio's own pts."""
    words = chunk.translation.source.words
    if words:
        return float(words[0].start), float(words[-1].end)
    return float(chunk.audio.pts), float(chunk.audio.pts)


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
        self._queue: deque[_Clause] = deque()
        self._by_id: dict[int, _Clause] = {}
        self._closed_ids: set[int] = set()
        self._closed_order: deque[int] = deque()
        self._rate = 1.0
        self._ratio = 1.0  # translated / source duration, learnt from complete clauses
        self._spans: deque[tuple[int, int, int]] = deque(maxlen=64)  # (clause id, start, end) of finished clauses
        self._clauses: list[ClauseTiming] = []
        self._decisions: list[SchedulerDecision] = []
        self._chunks_ignored = 0
        # video
        self._mapper = VideoClockMapper(
            max_drift=cfg.max_drift_ppm * 1e-6,
            slew=cfg.drift_slew,
            min_span=cfg.drift_min_span,
            enabled=cfg.correct_drift,
        )
        self._frames: dict[int, tuple[VideoFrame, float]] = {}  # slot -> (frame, source pts on the audio clock)
        self._next_slot: int | None = None
        self._last: tuple[VideoFrame, float] | None = None
        self._max_frames = int(math.ceil(cfg.fps * (cfg.max_delay + cfg.max_future + 1.0)))
        self._video_received = 0
        self._video_shown = 0
        self._video_repeated = 0
        self._video_dropped: Counter[str] = Counter()
        self._av_offsets: deque[float] = deque(maxlen=1_000_000)

    # ------------------------------------------------------------------ inputs

    def push_speech(self, chunk: SpeechChunk, arrival_wall: float) -> None:
        """A translated speech chunk arrived at ``arrival_wall``."""
        cfg = self.config
        samples, rate = self._check_chunk(chunk, arrival_wall)
        start, end = _span(chunk)
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
        if not isinstance(frame, VideoFrame):
            raise MediaError(f"push_video expects a VideoFrame, got {type(frame).__name__}", "pass frames.VideoFrame")
        if not (math.isfinite(frame.pts) and math.isfinite(arrival_wall)):
            raise MediaError(f"video frame {frame.index} has a non-finite pts or arrival time", "fix the ingest")
        if self.origin_wall is None:
            self.origin_wall = arrival_wall - frame.pts
        self._video_received += 1
        source = self._mapper.map(frame.pts, arrival_wall)
        if source > (arrival_wall - self.origin_wall) + self.config.max_future:
            self._video_dropped["future"] += 1
            return
        self._place_frame(round(source * self.config.fps), frame, source)
        while len(self._frames) > self._max_frames:
            del self._frames[min(self._frames)]
            self._video_dropped["overflow"] += 1

    def note_audio_clock(self, pts: float, arrival_wall: float) -> None:
        """Optional: arrivals of the raw input audio, so video drift is measured against the audio clock."""
        if math.isfinite(pts) and math.isfinite(arrival_wall):
            self._mapper.note_audio(pts, arrival_wall)

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
        items.extend(self._emit_video(due, first))
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
        if self._frames or self._next_slot is not None:
            last = max(self._frames) if self._frames else self._next_slot - 1
            speech_slot = math.ceil((end_out - cfg.delay) * cfg.fps) - 1 if self._clauses else last
            video = self._emit_video(max(last, speech_slot), min(self._frames, default=0))
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
            video_received=self._video_received,
            video_shown=self._video_shown,
            video_repeated=self._video_repeated,
            video_dropped=dict(self._video_dropped),
            video_buffered=len(self._frames),
            av_offsets=np.array(self._av_offsets, dtype=float),
            chunks_ignored=self._chunks_ignored,
            audio_out_seconds=(self._emitted_n - self._start_n) / self._sr,
            drift_ppm=self._mapper.drift_ppm,
            drift_correction=self._mapper.correction,
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

    def _check_chunk(self, chunk: SpeechChunk, arrival_wall: float) -> tuple[np.ndarray, int]:
        if not isinstance(chunk, SpeechChunk):
            raise MediaError(
                f"push_speech expects a SpeechChunk, got {type(chunk).__name__}", "pass frames.SpeechChunk"
            )
        samples = np.asarray(chunk.audio.samples, dtype=np.float32)
        rate = int(chunk.audio.sample_rate)
        if samples.ndim != 1:
            raise MediaError(f"speech audio must be mono (1-D), got shape {samples.shape}", "mix it down to mono")
        if not 4000 <= rate <= 192000:
            raise MediaError(f"speech sample rate {rate} Hz is out of range", "pass the TTS's real sample rate")
        start, end = _span(chunk)
        if not all(math.isfinite(v) for v in (start, end, arrival_wall, chunk.audio.pts)):
            raise MediaError("speech chunk has non-finite timestamps", "check the word times the ASR produced")
        if end < start:
            raise MediaError(f"clause source span ends ({end}) before it starts ({start})", "check word times")
        if not np.isfinite(samples).all():
            samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
        return samples, rate

    def _open(self, cid: int, start: float, end: float, rate: int) -> _Clause:
        cfg = self.config
        while len(self._queue) >= cfg.max_pending_clauses and self._drop_oldest_waiting("too many clauses waiting"):
            pass
        clause = _Clause(
            clause_id=cid,
            source_start=start,
            source_end=end,
            sample_rate=rate,
            stretch=StreamingTimeStretch(rate, 1.0, cfg.stretch_frame),
            resampler=StreamingResampler(rate, self._sr),
        )
        self._queue.append(clause)
        self._by_id[cid] = clause
        return clause

    def _learn_ratio(self, clause: _Clause) -> None:
        """Translated speech is longer or shorter than its source by a language-pair factor; learn it."""
        source = clause.source_end - clause.source_start
        if source >= 0.3 and clause.received:
            ratio = clause.received / clause.sample_rate / source
            self._ratio = min(max(0.7 * self._ratio + 0.3 * ratio, 0.3), 3.0)

    def _bound_pending(self) -> None:
        limit = self.config.max_pending_seconds
        while sum(sum(p.size for p in c.pending) / c.sample_rate for c in self._queue if not c.started) > limit:
            if not self._drop_oldest_waiting("too much speech waiting (max_pending_seconds)"):
                break

    def _drop_oldest_waiting(self, reason: str) -> bool:
        for clause in self._queue:
            if not clause.started:
                self._drop(clause, reason)
                return True
        return False

    def _quantised(self, clause: _Clause, rate: float) -> float:
        return clause.stretch.quantise(rate)

    def _duration_n(self, clause: _Clause, rate: float) -> float:
        """Output samples a not-started clause will take at ``rate`` (estimated while it is still arriving)."""
        total = clause.received
        if not clause.complete:
            expected = self._ratio * (clause.source_end - clause.source_start) * clause.sample_rate
            total = max(total, expected)
        return total / self._quantised(clause, rate) * self._sr / clause.sample_rate

    def _end_n(self, clause: _Clause, rate: float) -> float:
        """Estimated end of the playing clause when its future audio is rendered at ``rate``."""
        if clause.finished:
            return clause.write_n
        rendered = clause.stretch.expected_output * self._sr / clause.sample_rate
        future = 0.0
        if not clause.complete:
            expected = self._ratio * (clause.source_end - clause.source_start) * clause.sample_rate
            future = (
                max(expected - clause.received, 0.0) / self._quantised(clause, rate) * self._sr / clause.sample_rate
            )
        return max(clause.write_n, clause.start_n + clause.gap_n + rendered + future)

    def _earliest_n(self, clause: _Clause) -> int:
        return max(int(round((clause.source_start + self.config.delay) * self._sr)), clause.not_before_n)

    def _violation(self, clause: _Clause, start: float, end: float, limit: float | None = None) -> str | None:
        limit = self.config.max_delay if limit is None else limit
        bound = limit * self._sr
        if start - clause.source_start * self._sr > bound + 1e-6:
            return f"would start {(start / self._sr - clause.source_start):.2f} s after its source (bound {limit} s)"
        if end - clause.source_end * self._sr > bound + 1e-6:
            return f"would end {(end / self._sr - clause.source_end):.2f} s after its source (bound {limit} s)"
        return None

    def _check(self, cursor: int, rate: float, limit: float | None = None) -> tuple[_Clause, str] | None:
        """First not-started clause that breaks the bound (``limit``, default max_delay) when all speech from now on
        plays at ``rate``."""
        t = float(cursor)
        for clause in self._queue:
            if clause.started:
                t = max(t, self._end_n(clause, rate))
                continue
            start = max(float(self._earliest_n(clause)), t)
            end = start + self._duration_n(clause, rate)
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

    def _note_over(self, failure: tuple[_Clause, str]) -> tuple[_Clause, str] | None:
        """A clause will pass max_delay even at max_rate and is kept: record it once (and nothing to drop)."""
        clause, reason = failure
        if not clause.over_bound:
            clause.over_bound = True
            why = f"{reason} at {self.config.max_rate}x: kept, played late"
            self._decide(DecisionKind.OVER_BOUND, clause, self.config.max_rate, why)
        return None

    def _fails_alone(self, clause: _Clause, cursor: int) -> bool:
        rate = self.config.max_rate
        t = float(cursor)
        playing = self._queue[0] if self._queue and self._queue[0].started else None
        if playing is not None:
            t = max(t, self._end_n(playing, rate))
        start = max(float(self._earliest_n(clause)), t)
        end = start + self._duration_n(clause, rate)
        return self._violation(clause, start, end, self.config.drop_after) is not None

    def _drop(self, clause: _Clause, reason: str) -> None:
        self._queue.remove(clause)
        self._close(clause)
        start = max(self._earliest_n(clause), self._emitted_n) / self._sr
        self._decisions.append(
            SchedulerDecision(
                DecisionKind.DROP,
                clause.clause_id,
                self._emitted_n / self._sr,
                clause.source_start,
                start,
                start - clause.source_start,
                self._rate,
                reason,
            )
        )

    def _close(self, clause: _Clause) -> None:
        self._by_id.pop(clause.clause_id, None)
        self._close_id(clause.clause_id)

    def _close_id(self, cid: int) -> None:
        self._closed_ids.add(cid)
        self._closed_order.append(cid)
        while len(self._closed_order) > 4096:
            self._closed_ids.discard(self._closed_order.popleft())

    def _decide(
        self, kind: DecisionKind, clause: _Clause, rate: float | None, reason: str, at_n: int | None = None
    ) -> None:
        start = clause.start_n / self._sr if clause.started else None
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

    def _start(self, clause: _Clause, start_n: int) -> None:
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

    def _render(self, clause: _Clause, samples: np.ndarray) -> None:
        if self._rate != clause.stretch.rate:
            clause.stretch.set_rate(self._rate)
            if self._rate > clause.rate:
                clause.rate = self._rate
                self._decide(DecisionKind.COMPRESS, clause, self._rate, "backlog would pass max_delay")
        self._append(clause, clause.resampler.process(clause.stretch.process(samples)))

    def _finish_render(self, clause: _Clause) -> None:
        if clause.finished:
            return
        tail = clause.resampler.process(clause.stretch.flush())
        self._append(clause, np.concatenate([tail, clause.resampler.flush()]))
        clause.finished = True

    def _append(self, clause: _Clause, audio: np.ndarray) -> None:
        if audio.size:
            clause.segments.append((clause.write_n, audio))
            clause.write_n += audio.size
            clause.underrunning = False

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
            self._copy(clause, block, n, end)
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

    def _copy(self, clause: _Clause, block: np.ndarray, n: int, end: int) -> None:
        segments = clause.segments
        while segments:
            at, audio = segments[0]
            lo, hi = max(at, n), min(at + audio.size, end)
            if hi > lo:
                block[lo - n : hi - n] = audio[lo - at : hi - at]
            if at + audio.size <= end:
                segments.popleft()
            else:
                break

    def _retire(self, clause: _Clause) -> None:
        self._queue.popleft()
        self._close(clause)
        self._spans.append((clause.clause_id, clause.start_n, clause.write_n))
        self._clauses.append(
            ClauseTiming(
                clause_id=clause.clause_id,
                source_start=clause.source_start,
                source_end=clause.source_end,
                start_out=clause.start_n / self._sr,
                end_out=clause.write_n / self._sr,
                rate=clause.rate,
                underrun=clause.gap_n / self._sr,
                complete_at_start=clause.complete_at_start,
            )
        )

    def _clauses_in(self, lo: float, hi: float) -> tuple[int, ...]:
        a, b = lo * self._sr, hi * self._sr
        ids = [cid for cid, start, end in self._spans if start < b and end > a]
        ids += [c.clause_id for c in self._queue if c.started and c.start_n < b and c.write_n > a]
        return tuple(ids)

    # ------------------------------------------------------------------ video

    def _slot_offset(self, source: float, slot: int) -> float:
        return source - slot / self.config.fps

    def _place_frame(self, slot: int, frame: VideoFrame, source: float) -> None:
        if self._next_slot is not None and slot < self._next_slot:
            self._video_dropped["late"] += 1
            return
        held = self._frames.get(slot)
        if held is None:
            self._frames[slot] = (frame, source)
            return
        if held[1] == source:
            self._video_dropped["duplicate"] += 1
            return
        # Two frames for one output slot (input faster than output, or pts jitter): the nearer one keeps it and
        # the other may take the free slot beside it if that keeps it inside the sync window.
        if abs(self._slot_offset(source, slot)) < abs(self._slot_offset(held[1], slot)):
            self._frames[slot], (frame, source) = (frame, source), held
        other = slot + (1 if source * self.config.fps > slot else -1)
        offset = self._slot_offset(source, other)
        if (
            other not in self._frames
            and (self._next_slot is None or other >= self._next_slot)
            and -MOVE_EARLY_LIMIT <= offset <= MOVE_LATE_LIMIT
        ):
            self._frames[other] = (frame, source)
        else:
            self._video_dropped["decimated"] += 1

    def _emit_video(self, due: int, first: int) -> list[ScheduledVideo]:
        """Slots up to ``due``; video starts at its first frame, but never at a slot before ``first``."""
        cfg = self.config
        if self._next_slot is None:
            # Video starts with the first frame that is due; until then earlier frames may still arrive.
            if not self._frames or min(self._frames) > due:
                return []
            for slot in [s for s in self._frames if s < first]:
                del self._frames[slot]
                self._video_dropped["late"] += 1
            if not self._frames:
                return []
            self._next_slot = min(self._frames)
        out: list[ScheduledVideo] = []
        period = 1.0 / cfg.fps
        for slot in range(self._next_slot, due + 1):
            held = self._frames.pop(slot, None)
            repeat = held is None
            if repeat:
                held = self._last
                self._video_repeated += 1
            else:
                self._last = held
                self._video_shown += 1
            frame, source = held
            pts = cfg.delay + slot * period
            offset = (source + cfg.delay) - pts
            if not repeat:
                self._av_offsets.append(offset)
            span = (pts, pts + period)
            out.append(ScheduledVideo(frame, pts, slot, source, repeat, span, self._clauses_in(*span), offset))
        self._next_slot = max(self._next_slot, due + 1)
        return out


@dataclass(frozen=True)
class Arrival:
    """An input and the wall time it reaches the scheduler, for replays in virtual time."""

    wall: float
    item: SpeechChunk | VideoFrame


def run_virtual(
    scheduler: AVScheduler, arrivals: Iterable[Arrival], step: float = 0.01, until: float | None = None
) -> list[ScheduledItem]:
    """Replay arrivals on a virtual clock, pulling every ``step`` seconds, then flush: file mode and simulations.

    The clock starts at the first arrival and runs to ``until`` (default: the last arrival).
    """
    if step <= 0:
        raise RtF2fError(f"step must be positive, got {step}", "pull every 10-20 ms")
    events = sorted(arrivals, key=lambda a: a.wall)
    if not events:
        return scheduler.flush()
    end = events[-1].wall if until is None else until
    items: list[ScheduledItem] = []
    now, i, k = events[0].wall, 0, 0
    while now <= end + step:
        while i < len(events) and events[i].wall <= now:
            event = events[i]
            if isinstance(event.item, VideoFrame):
                scheduler.push_video(event.item, event.wall)
            else:
                scheduler.push_speech(event.item, event.wall)
            i += 1
        items.extend(scheduler.pull(now))
        k += 1
        now = events[0].wall + k * step
    items.extend(scheduler.flush())
    return items


class RealtimeScheduler:
    """Paces an ``AVScheduler`` on a monotonic clock: push inputs as they come, iterate ``stream()`` for output.

    Arrival times are stamped here, so callers only hand over frames. ``clock`` and ``sleep`` are injectable so
    the wrapper can run in virtual time.
    """

    def __init__(
        self,
        scheduler: AVScheduler | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tick: float = 0.01,
    ) -> None:
        self.scheduler = scheduler or AVScheduler()
        self._clock = clock
        self._sleep = sleep
        self.tick = tick
        self._closed = False
        if self.scheduler.origin_wall is None:
            self.scheduler.origin_wall = clock()

    def push_speech(self, chunk: SpeechChunk) -> None:
        self.scheduler.push_speech(chunk, self._clock())

    def push_video(self, frame: VideoFrame) -> None:
        self.scheduler.push_video(frame, self._clock())

    def close(self) -> None:
        """No more input: ``stream()`` plays out what is held and ends."""
        self._closed = True

    async def stream(self) -> AsyncIterator[ScheduledItem]:
        while not self._closed:
            for item in self.scheduler.pull(self._clock()):
                yield item
            await self._sleep(self.tick)
        for item in self.scheduler.flush():
            yield item
