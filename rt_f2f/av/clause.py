"""One translated clause inside the A/V scheduler: its audio as it arrives, as it is rendered onto the output
sample grid (time-stretched, resampled), and the estimates the planner needs of it.

Only what a clause knows about itself lives here; when it starts, how fast it plays and whether it is dropped is
``AVScheduler``'s decision. Positions ending in ``_n`` are output samples (output pts x output rate).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..audio import StreamingResampler
from ..errors import MediaError
from ..frames import SpeechChunk
from .schedule import ClauseTiming
from .timestretch import StreamingTimeStretch


@dataclass(eq=False)
class ClauseState:
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

    @classmethod
    def open(
        cls, clause_id: int, start: float, end: float, rate: int, out_rate: int, stretch_frame: float
    ) -> ClauseState:
        """A new clause from its first chunk: source span, input rate; rendered at rate 1 until told otherwise."""
        stretch = StreamingTimeStretch(rate, 1.0, stretch_frame)
        return cls(clause_id, start, end, rate, stretch, StreamingResampler(rate, out_rate))

    @property
    def pending_seconds(self) -> float:
        """Input audio held while the clause waits to start."""
        return sum(p.size for p in self.pending) / self.sample_rate

    def _expected(self, ratio: float) -> float:
        """Input samples the whole clause will have: its source span times the learnt length ratio."""
        return ratio * (self.source_end - self.source_start) * self.sample_rate

    def duration_n(self, rate: float, ratio: float, out_rate: int) -> float:
        """Output samples a not-started clause will take at ``rate`` (estimated while it is still arriving)."""
        total = self.received
        if not self.complete:
            total = max(total, self._expected(ratio))
        return total / self.stretch.quantise(rate) * out_rate / self.sample_rate

    def end_n(self, rate: float, ratio: float, out_rate: int) -> float:
        """Estimated end of the playing clause when its future audio is rendered at ``rate``."""
        if self.finished:
            return self.write_n
        rendered = self.stretch.expected_output * out_rate / self.sample_rate
        future = 0.0
        if not self.complete:
            future = (
                max(self._expected(ratio) - self.received, 0.0)
                / self.stretch.quantise(rate)
                * out_rate
                / self.sample_rate
            )
        return max(self.write_n, self.start_n + self.gap_n + rendered + future)

    def append(self, audio: np.ndarray) -> None:
        """Rendered output audio, placed right after what was rendered before."""
        if audio.size:
            self.segments.append((self.write_n, audio))
            self.write_n += audio.size
            self.underrunning = False

    def copy_into(self, block: np.ndarray, n: int, end: int) -> None:
        """Write the rendered audio that falls in output samples [n, end) into ``block``; forget what is past."""
        segments = self.segments
        while segments:
            at, audio = segments[0]
            lo, hi = max(at, n), min(at + audio.size, end)
            if hi > lo:
                block[lo - n : hi - n] = audio[lo - at : hi - at]
            if at + audio.size <= end:
                segments.popleft()
            else:
                break

    def timing(self, out_rate: int) -> ClauseTiming:
        return ClauseTiming(
            clause_id=self.clause_id,
            source_start=self.source_start,
            source_end=self.source_end,
            start_out=self.start_n / out_rate,
            end_out=self.write_n / out_rate,
            rate=self.rate,
            underrun=self.gap_n / out_rate,
            complete_at_start=self.complete_at_start,
        )


def source_span(chunk: SpeechChunk) -> tuple[float, float]:
    """Source span of a clause: its words' times, or (for a clause without word times) the audio's own pts."""
    words = chunk.translation.source.words
    if words:
        return float(words[0].start), float(words[-1].end)
    return float(chunk.audio.pts), float(chunk.audio.pts)


def check_chunk(chunk: SpeechChunk, arrival_wall: float) -> tuple[np.ndarray, int]:
    """A speech chunk's samples (mono float32, non-finite values clamped) and rate; a one-line error for input no
    clause can be made of."""
    if not isinstance(chunk, SpeechChunk):
        raise MediaError(f"push_speech expects a SpeechChunk, got {type(chunk).__name__}", "pass frames.SpeechChunk")
    samples = np.asarray(chunk.audio.samples, dtype=np.float32)
    rate = int(chunk.audio.sample_rate)
    if samples.ndim != 1:
        raise MediaError(f"speech audio must be mono (1-D), got shape {samples.shape}", "mix it down to mono")
    if not 4000 <= rate <= 192000:
        raise MediaError(f"speech sample rate {rate} Hz is out of range", "pass the TTS's real sample rate")
    start, end = source_span(chunk)
    if not all(math.isfinite(v) for v in (start, end, arrival_wall, chunk.audio.pts)):
        raise MediaError("speech chunk has non-finite timestamps", "check the word times the ASR produced")
    if end < start:
        raise MediaError(f"clause source span ends ({end}) before it starts ({start})", "check word times")
    if not np.isfinite(samples).all():
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return samples, rate
