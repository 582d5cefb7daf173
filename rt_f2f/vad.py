"""Voice activity segmentation: audio chunks in, speech segments out, on the input's session clock.

webrtcvad classifies 10/20/30 ms frames of 16 kHz audio as voiced or not; this module turns those decisions into
segments a streaming recogniser can use. A segment opens after ``onset_ms`` of voiced frames in a row (so a click
does not open one) and starts ``preroll_ms`` earlier (so the first consonant is not cut off); it closes after
``hangover_ms`` of non-speech (so a breath between words does not split a sentence) or is force-cut at the quietest
recent frame once it reaches ``max_segment_s`` (so downstream buffers stay bounded). While the speaker talks, the
growing segment is emitted every ``partial_interval_s`` with ``final=False`` so the recogniser can start early.

Input may come at any sample rate: it is resampled to 16 kHz by a streaming polyphase resampler whose output is
sample-aligned with the input, so a frame's time is exact arithmetic on the first chunk's ``pts``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from math import gcd

import numpy as np
from scipy.signal import firwin, resample_poly

from .errors import MediaError, RtF2fError
from .frames import AudioChunk, ControlEvent, ControlKind, Frame, SpeechSegment
from .rates import ENGINE_RATE
from .stage import Stage

FRAME_MS_CHOICES = (10, 20, 30)
MAX_INPUT_RATE = 384_000


@dataclass(frozen=True)
class VADConfig:
    """Segmentation knobs; the defaults suit conversational speech into Whisper."""

    aggressiveness: int = 2  # webrtcvad mode 0 (permissive) .. 3 (strict)
    frame_ms: int = 30
    onset_ms: int = 60  # voiced audio in a row that opens a segment
    hangover_ms: int = 450  # non-speech that closes a segment
    pause_ms: int = 0  # non-speech inside a segment that is a pause: the segment goes out at once (0: never)
    preroll_ms: int = 240  # audio kept before the onset
    postroll_ms: int = 150  # audio kept after the last voiced frame
    min_speech_ms: int = 250  # segments with less voiced audio than this are dropped as noise
    max_segment_s: float = 20.0  # force a cut so no segment grows without bound
    partial_interval_s: float = 0.5  # how often the growing segment is emitted while the speaker talks
    gap_tolerance_s: float = 0.1  # input timestamps further than this from the expected one restart the clock

    def __post_init__(self) -> None:
        problems = []
        if self.aggressiveness not in (0, 1, 2, 3):
            problems.append(f"aggressiveness must be 0, 1, 2 or 3 (got {self.aggressiveness})")
        if self.frame_ms not in FRAME_MS_CHOICES:
            problems.append(f"frame_ms must be 10, 20 or 30 (got {self.frame_ms})")
        for name in ("onset_ms", "hangover_ms", "pause_ms", "preroll_ms", "postroll_ms", "min_speech_ms"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative")
        if self.partial_interval_s <= 0:
            problems.append("partial_interval_s must be positive")
        if self.max_segment_s < 1.0:
            problems.append("max_segment_s must be at least 1 s")
        if problems:
            raise RtF2fError("invalid VAD settings: " + "; ".join(problems), "fix the VAD configuration")

    def frames(self, ms: float) -> int:
        """Whole frames covering ``ms`` milliseconds (at least one for a positive duration)."""
        return math.ceil(ms / self.frame_ms) if ms > 0 else 0


class StreamResampler:
    """Polyphase resampling chunk by chunk, with the same output as resampling the whole signal at once.

    Resampling each chunk on its own would put a filter edge (a click) at every chunk boundary. This keeps the
    filter's context from the previous chunk and holds back the few input samples whose output still depends on
    input that has not arrived yet, so output sample ``i`` always sits at input time ``i / rate_out``.
    """

    def __init__(self, rate_in: int, rate_out: int = ENGINE_RATE) -> None:
        g = gcd(int(rate_in), int(rate_out))
        self.up, self.down = int(rate_out) // g, int(rate_in) // g
        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate  # the filter scipy designs by default, built once here
        identity = self.up == self.down == 1
        self._filter = None if identity else firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0))
        context = -(-half_len // self.up) + 1  # input samples either side that an output sample depends on
        self.context = -(-context // self.down) * self.down  # a multiple of down keeps output indices whole
        self._history = np.zeros(self.context, np.float32)
        self._pending = np.zeros(0, np.float32)

    @property
    def identity(self) -> bool:
        return self.up == self.down == 1

    def _run(self, block: np.ndarray) -> np.ndarray:
        return resample_poly(block, self.up, self.down, window=self._filter).astype(np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, np.float32)
        if self.identity:
            return samples
        self._pending = np.concatenate([self._pending, samples])
        n = ((self._pending.size - self.context) // self.down) * self.down
        if n <= 0:
            return np.zeros(0, np.float32)
        block = np.concatenate([self._history, self._pending[: n + self.context]])
        start = self.context * self.up // self.down
        out = self._run(block)[start : start + n * self.up // self.down]
        self._history = np.concatenate([self._history, self._pending[:n]])[-self.context :]
        self._pending = self._pending[n:]
        return out

    def finish(self) -> np.ndarray:
        """The output still held back, computed as if the signal ended with silence (as one-shot resampling does)."""
        n = self._pending.size
        if self.identity or n == 0:
            return np.zeros(0, np.float32)
        block = np.concatenate([self._history, self._pending, np.zeros(self.context, np.float32)])
        start = self.context * self.up // self.down
        out = self._run(block)[start : start + -(-n * self.up // self.down)]
        self._history = np.zeros(self.context, np.float32)
        self._pending = np.zeros(0, np.float32)
        return out


@dataclass
class _Frame:
    samples: np.ndarray
    index: int  # frame number since the clock's anchor
    voiced: bool
    energy: float


class VADSegmenter:
    """Streaming segmentation: ``feed`` chunks, get the speech segments (partial and final) they complete."""

    def __init__(self, config: VADConfig | None = None, source: str = "") -> None:
        import webrtcvad

        self.config = config or VADConfig()
        self.source = source
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        self._frame_len = ENGINE_RATE * self.config.frame_ms // 1000
        self._onset = max(1, self.config.frames(self.config.onset_ms))
        self._preroll = self.config.frames(self.config.preroll_ms)
        self._postroll = self.config.frames(self.config.postroll_ms)
        self._hangover = max(1, self.config.frames(self.config.hangover_ms))
        self._pause = self.config.frames(self.config.pause_ms)
        self._min_voiced = self.config.frames(self.config.min_speech_ms)
        self._max_frames = max(self._onset + 1, int(self.config.max_segment_s * 1000 / self.config.frame_ms))
        self._partial_frames = max(1, self.config.frames(self.config.partial_interval_s * 1000))
        self._next_id = 0
        self._reset_clock(None, None)

    # -- clock ------------------------------------------------------------------------------------------
    def _reset_clock(self, pts: float | None, rate: int | None) -> None:
        self._anchor = pts  # session time of the first input sample since the last (re)start
        self._rate = rate
        self._consumed = 0  # input samples since the anchor
        self._resampler = StreamResampler(rate) if rate else None
        self._carry = np.zeros(0, np.float32)  # 16 kHz samples short of a whole frame
        self._frame_count = 0
        self._ring: deque[_Frame] = deque(maxlen=self._preroll + self._onset)
        self._segment: list[_Frame] | None = None
        self._emitted_frames = 0  # segment length at the last partial emission (0: none emitted yet)

    def _time(self, frame_index: int) -> float:
        return self._anchor + frame_index * self.config.frame_ms / 1000.0

    # -- input ------------------------------------------------------------------------------------------
    def feed(self, chunk: AudioChunk) -> list[SpeechSegment]:
        samples = _check_chunk(chunk)
        out: list[SpeechSegment] = []
        if self._anchor is not None:
            expected = self._anchor + self._consumed / self._rate
            if chunk.sample_rate != self._rate or abs(chunk.pts - expected) > self.config.gap_tolerance_s:
                out += self._end_of_input()  # a discontinuity: what came before is finished
        if self._anchor is None:
            self._reset_clock(chunk.pts, chunk.sample_rate)
        self._consumed += samples.size
        out += self._frames(self._resampler.push(samples))
        return out

    def flush(self) -> list[SpeechSegment]:
        """End of input: close the open segment (if it holds enough speech) and forget the clock."""
        return self._end_of_input()

    def _end_of_input(self) -> list[SpeechSegment]:
        out: list[SpeechSegment] = []
        if self._resampler is not None:
            out += self._frames(self._resampler.finish())
        if self._segment is not None:
            out += self._close(len(self._segment))
        self._reset_clock(None, None)
        return out

    def _frames(self, samples16k: np.ndarray) -> list[SpeechSegment]:
        data = np.concatenate([self._carry, samples16k]) if self._carry.size else samples16k
        whole = data.size // self._frame_len
        self._carry = data[whole * self._frame_len :].copy()
        out: list[SpeechSegment] = []
        for k in range(whole):
            frame = data[k * self._frame_len : (k + 1) * self._frame_len]
            pcm = (np.clip(frame, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
            voiced = self._vad.is_speech(pcm, ENGINE_RATE)
            energy = float(np.mean(frame.astype(np.float64) ** 2))
            out += self._step(_Frame(frame.copy(), self._frame_count, voiced, energy))
            self._frame_count += 1
        return out

    # -- segmentation -----------------------------------------------------------------------------------
    def _step(self, frame: _Frame) -> list[SpeechSegment]:
        if self._segment is None:
            self._ring.append(frame)
            recent = list(self._ring)[-self._onset :]
            if len(recent) == self._onset and all(f.voiced for f in recent):
                self._segment = list(self._ring)
                self._ring.clear()
                self._emitted_frames = 0
            return []
        seg = self._segment
        seg.append(frame)
        out: list[SpeechSegment] = []
        trailing = _trailing_silence(seg)
        if trailing >= self._hangover:
            return self._close(len(seg) - trailing + min(self._postroll, trailing))
        if len(seg) >= self._max_frames:
            out += self._force_cut()
            seg = self._segment
            trailing = _trailing_silence(seg) if seg is not None else 0
        # a pause goes out the moment it is one (not at the next partial interval): the recogniser can commit
        # every word before it without waiting for its margin, and the clause before it can leave
        paused = 0 < self._pause == trailing
        if seg is not None and self._valid(seg) and (len(seg) - self._emitted_frames >= self._partial_frames or paused):
            self._emitted_frames = len(seg)
            out.append(self._emit(seg, final=False, trailing=trailing))
        return out

    def _valid(self, frames: list[_Frame]) -> bool:
        return sum(f.voiced for f in frames) >= max(1, self._min_voiced)

    def _close(self, keep: int) -> list[SpeechSegment]:
        """End the open segment after its first ``keep`` frames; the rest may pre-roll the next one."""
        seg, self._segment = self._segment, None
        keep = max(keep, self._emitted_frames)  # a final never takes back audio a partial already sent
        kept, rest = seg[:keep], seg[keep:]
        self._ring.clear()
        self._ring.extend(rest)
        if self._emitted_frames or self._valid(kept):
            return [self._emit(kept, final=True, advance=True, trailing=_trailing_silence(kept))]
        return []

    def _force_cut(self) -> list[SpeechSegment]:
        """Cut a too-long segment at its quietest recent frame; speech after the cut opens the next segment."""
        seg = self._segment
        window = max(1, min(len(seg) // 2, int(1000 / self.config.frame_ms)))
        tail = seg[-window:]
        quietest = min(range(len(tail)), key=lambda i: (tail[i].voiced, tail[i].energy))
        cut = len(seg) - window + quietest + 1
        head, rest = seg[:cut], seg[cut:]
        out = [self._emit(head, final=True, advance=True)]
        self._segment = rest if rest else None
        self._emitted_frames = 0
        if self._segment is None:
            self._ring.clear()
        return out

    def _emit(self, frames: list[_Frame], final: bool, advance: bool = False, trailing: int = 0) -> SpeechSegment:
        audio = AudioChunk(
            np.concatenate([f.samples for f in frames]), ENGINE_RATE, self._time(frames[0].index), self.source
        )
        segment = SpeechSegment(audio, self._next_id, final, trailing * self.config.frame_ms / 1000.0)
        if advance:
            self._next_id += 1
        return segment


def _trailing_silence(frames: list[_Frame]) -> int:
    n = 0
    for f in reversed(frames):
        if f.voiced:
            break
        n += 1
    return n


def _check_chunk(chunk: AudioChunk) -> np.ndarray:
    if not isinstance(chunk.sample_rate, int | np.integer) or not 0 < chunk.sample_rate <= MAX_INPUT_RATE:
        raise MediaError(
            f"audio chunk has sample rate {chunk.sample_rate!r}", f"give a rate between 1 and {MAX_INPUT_RATE} Hz"
        )
    samples = np.asarray(chunk.samples)
    if samples.ndim != 1:
        raise MediaError(f"audio chunk has shape {samples.shape}; the VAD takes mono", "mix the channels down first")
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max + 1)
    samples = samples.astype(np.float32, copy=False)
    if not np.all(np.isfinite(samples)):
        raise MediaError("audio chunk holds NaN or infinite samples", "check the capture or decoder feeding the VAD")
    return samples


def find_speech(
    samples: np.ndarray, sample_rate: int, config: VADConfig | None = None, pts: float = 0.0
) -> list[SpeechSegment]:
    """Offline use: the final speech segments of a whole recording."""
    segmenter = VADSegmenter(config)
    found = segmenter.feed(AudioChunk(np.asarray(samples), sample_rate, pts)) + segmenter.flush()
    return [s for s in found if s.final]


class VADStage(Stage):
    """AudioChunk -> SpeechSegment (partials while the speaker talks, a final when they pause).

    Control events pass through; FLUSH, END_OF_SPEECH and END_OF_STREAM close the open segment first.
    """

    name = "vad"

    def __init__(self, config: VADConfig | None = None, source: str = "") -> None:
        super().__init__()
        self.segmenter = VADSegmenter(config, source)
        self._heard = 0.0  # where the last audio given ends: the media time a flush at the end answers

    def _close(self, media_in: float, wall_in: float) -> list[SpeechSegment]:
        segments = self.segmenter.flush()
        for segment in segments:
            self.record(media_in, segment.audio.end, wall_in)
        return segments

    async def process(self, item: Frame) -> AsyncIterator[Frame]:
        wall_in = time.perf_counter()
        if isinstance(item, ControlEvent):
            if item.kind in (ControlKind.FLUSH, ControlKind.END_OF_SPEECH, ControlKind.END_OF_STREAM):
                for segment in self._close(item.pts, wall_in):
                    yield segment
            yield item
            return
        if not isinstance(item, AudioChunk):
            raise TypeError(f"VADStage takes AudioChunk or ControlEvent, not {type(item).__name__}")
        self._heard = item.end
        for segment in self.segmenter.feed(item):
            self.record(item.end, segment.audio.end, wall_in)
            yield segment

    async def flush(self) -> AsyncIterator[Frame]:
        for segment in self._close(self._heard, time.perf_counter()):
            yield segment
