"""What the A/V scheduler is configured with, what it emits and what it reports: plain data, no logic beyond
checking a configuration and summarising metrics.

Output pts are seconds on the output clock (output pts X plays at wall ``origin + X``). A/V offset follows ITU-R
BT.1359 (at most 45 ms audio early, 125 ms audio late): for a frame captured at t (on the audio clock) and shown at
output pts P, ``av_offset = (t + D) - P``, positive when audio is late.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from ..errors import RtF2fError
from ..frames import AudioChunk, VideoFrame

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
