"""Streaming lip-sync: frames and audio go in as they come, re-mouthed frames come out in order.

Wav2Lip draws frame t's mouth from the 16 mel steps (0.2 s) of audio starting at t, and the STFT behind the last
step reaches 25 ms further, so a frame can only be finished once audio up to t + 0.225 s has arrived
(``LOOKAHEAD_S``). Frames wait in a queue until then; ready frames are batched (the generator is far cheaper per
frame in batches) until either ``batch_size`` are ready or the oldest would otherwise be held past ``max_latency_s``
of media time (the video clock: the latest frame pts pushed), whichever comes first. Frames leave strictly in arrival order; a frame without a
face is not sent to the generator but still waits its turn, and is counted.

With a backend that has ``submit`` (a ``shared_generator.GeneratorClient``: one generator shared by many
streams), a batch is handed over without waiting; its frames leave once the shared generator settles them (``poll``
collects them between pushes). A frame the shared generator skipped as late goes out with its original mouth, counted in
``frames_skipped_late``.

The mel windows are computed per batch from the buffered audio, aligned to the mel hop on the audio clock, so they
equal the columns a whole-file ``melspectrogram`` would give, reflect padding at the start included. Once the
caller says the audio has ended (``end_audio``; the file command does, having pushed it all), the end is padded
the same way and windows past it take the last 16 steps, as the original ``inference.py`` does. Audio
that never arrived for a stretch is silence; if audio stalls entirely, frames more than ``audio_wait_s`` of video
time old go out with silence rather than hold the stream (counted in ``frames_without_audio``).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..audio import resample
from ..frames import AudioChunk, ControlEvent, ControlKind, Frame, SpeechChunk, VideoFrame
from ..stage import Stage
from .composite import Blender, build_input, crop_face, output_to_rgb
from .faces import DEFAULT_PADS, FaceBox, FaceTracker, MediaPipeDetector
from .mel import HOP, MEL_STEPS_PER_SECOND, MEL_WINDOW, N_FFT, SAMPLE_RATE, mel_columns, mel_steps

if TYPE_CHECKING:
    from .session import FaceTrack
    from .shared_generator import Generator
    from .ticket import RenderTicket

log = logging.getLogger(__name__)


def lookahead_s(mel_window: int = MEL_WINDOW) -> float:
    """Seconds of audio a frame needs after its pts: its mel window plus the last STFT frame's half width."""
    return (mel_window * HOP + N_FFT // 2) / SAMPLE_RATE


LOOKAHEAD_S = lookahead_s()  # 0.225 s for Wav2Lip (0.3625 s for LipGAN's 27 steps)
_EPS = 1e-6  # timestamps are sums of float steps (i / fps): compare with a little slack
_TRACK = object()  # push_video's default: ask the tracker
_CONTEXT_STEPS = 3  # mel steps of audio kept before the oldest window (its first STFT frame reaches 2.5 back)


@dataclass
class StreamStats:
    frames_in: int = 0
    frames_out: int = 0
    frames_without_face: int = 0
    frames_without_audio: int = 0  # went out with (partly) made-up silence because audio stalled
    frames_skipped_late: int = 0  # a shared generator could not render them by their deadline: original mouth
    frames_failed: int = 0  # a shared generator's batch raised (the error went to the caller once): original mouth
    batches: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    audio_samples: int = 0
    audio_gap_samples: int = 0  # holes in the audio timeline, filled with silence
    audio_overlap_samples: int = 0  # audio that arrived for time already covered, dropped
    infer_seconds: float = 0.0


@dataclass
class _Pending:
    frame: VideoFrame
    box: FaceBox | None
    mel_start: int  # first mel step of this frame's window, on the audio clock
    wall_in: float
    output: np.ndarray | None = None
    crop: np.ndarray | None = None  # the 96x96 face the output was generated from (colour reference)
    ticket: tuple[RenderTicket, int] | None = None  # (its ticket, its index there) while a shared generator renders it
    skipped: bool = False  # the shared generator skipped it: it goes out as it came

    @property
    def done(self) -> bool:
        return self.box is None or self.output is not None or self.skipped


class LipSyncStream:
    """Push ``VideoFrame``s and audio in; get composited ``VideoFrame``s back, in order, from every call: the
    ``session.LipSyncSession`` the A/V driver feeds.

    ``tracker`` finds the face in each frame (default: a ``FaceTracker`` on mediapipe); ``backend`` renders mouths
    (a ``LipSyncBackend``, or a ``batcher.GeneratorClient``, whose ``submit`` hands batches to a shared generator).
    Not thread-safe: drive it from one thread (``FrameSink`` and ``LipSyncStage`` do, on their worker).
    """

    def __init__(
        self,
        backend: Generator,
        fps: float = 25.0,
        batch_size: int = 8,
        max_latency_s: float = 0.5,
        tracker: FaceTrack | None = None,
        blender: Blender | None = None,
        pads: tuple[int, int, int, int] = DEFAULT_PADS,
        audio_wait_s: float = 1.0,
        max_buffer_s: float = 120.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        # LipGAN reads 27 mel steps per frame where Wav2Lip reads 16: the window sets how much audio a frame waits for
        self.mel_window = int(getattr(backend, "mel_window", MEL_WINDOW))
        self.lookahead_s = lookahead_s(self.mel_window)
        if max_latency_s < self.lookahead_s:
            raise ValueError(
                f"max_latency_s={max_latency_s} is below the {self.lookahead_s:.3f} s of audio the generator needs "
                "after a frame"
            )
        self.backend = backend
        self.fps = fps
        self.batch_size = batch_size
        self.max_latency_s = max_latency_s
        self.audio_wait_s = max(audio_wait_s, self.lookahead_s)
        self.max_buffer = None if math.isinf(max_buffer_s) else int(max_buffer_s * SAMPLE_RATE)
        self.tracker: FaceTrack = (
            tracker if tracker is not None else FaceTracker(MediaPipeDetector(), pads=pads, fps=fps)
        )
        self.blender = blender or Blender()
        self.stats = StreamStats()
        self._queue: deque[_Pending] = deque()
        self._origin: float | None = None  # session-clock time of audio sample 0
        self._buf = np.zeros(0, np.float32)
        self._buf_start = 0  # absolute sample index of _buf[0]
        self._video_now = -math.inf
        self._audio_total: int | None = None  # samples in the whole signal, once end_audio() said it ended
        self._slack = 1.0 / fps  # a batch is started one frame interval before the latency bound would be hit

    # -- audio ---------------------------------------------------------------------------------------------
    @property
    def audio_end(self) -> float:
        """Session-clock time up to which audio has arrived (-inf before any)."""
        if self._origin is None:
            return -math.inf
        return self._origin + (self._buf_start + self._buf.size) / SAMPLE_RATE

    @property
    def buffered_seconds(self) -> float:
        return self._buf.size / SAMPLE_RATE

    def push_audio(self, samples: np.ndarray, pts: float, sample_rate: int = SAMPLE_RATE) -> list[VideoFrame]:
        """Add mono audio starting at ``pts``; returns frames this completes (possibly none)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if sample_rate != SAMPLE_RATE:
            x = resample(x, sample_rate, SAMPLE_RATE)
        if x.size == 0:
            return self._pump()
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
        if self._origin is None:
            self._origin = float(pts)
        start = round((pts - self._origin) * SAMPLE_RATE)
        end = self._buf_start + self._buf.size
        if start > end:
            gap = start - end
            self.stats.audio_gap_samples += gap
            x = np.concatenate([np.zeros(gap, np.float32), x])
        elif start < end:
            overlap = min(end - start, x.size)
            self.stats.audio_overlap_samples += overlap
            x = x[overlap:]
        self._buf = np.concatenate([self._buf, x]) if self._buf.size else x.copy()
        self.stats.audio_samples += x.size
        # bounded: audio far ahead of any frame is not kept forever (frames that would need it get silence)
        if self.max_buffer is not None and self._buf.size > self.max_buffer:
            drop = self._buf.size - self.max_buffer
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return self._pump()

    def end_audio(self) -> list[VideoFrame]:
        """No more audio will come: every queued frame can be finished, with the original's end handling."""
        self._audio_total = self._buf_start + self._buf.size
        return self._pump()

    def _mel_start(self, pts: float) -> int:
        origin = self._origin if self._origin is not None else pts
        return math.floor((pts - origin) * MEL_STEPS_PER_SECOND + 1e-6)

    def _last_start(self) -> int | None:
        """With the audio ended: the last window start the whole-file mel has (the original clamps to it)."""
        return None if self._audio_total is None else max(0, mel_steps(self._audio_total) - self.mel_window)

    def _windows(self, starts: list[int]) -> np.ndarray:
        """(B, 1, 80, mel_window) mel windows for frames whose windows start at these mel steps."""
        last_start = self._last_start()
        if last_start is not None:
            starts = [min(s, last_start) for s in starts]
        first, last = min(starts), max(starts)
        mel = mel_columns(self._buf, self._buf_start, first, last - first + self.mel_window, self._audio_total)
        return np.stack([mel[:, s - first : s - first + self.mel_window] for s in starts])[:, None].astype(np.float32)

    def _trim_audio(self) -> None:
        """Forget audio no queued or future frame can need (frames arrive in pts order)."""
        if self._origin is None or not math.isfinite(self._video_now):
            return
        oldest = self._queue[0].mel_start if self._queue else self._mel_start(self._video_now)
        last_start = self._last_start()
        oldest = oldest if last_start is None else min(oldest, last_start)
        keep_from = (oldest - _CONTEXT_STEPS - 1) * HOP
        drop = min(keep_from - self._buf_start, self._buf.size)
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop

    # -- video ---------------------------------------------------------------------------------------------
    def push_video(
        self, frame: VideoFrame, box: FaceBox | None | object = _TRACK, mel_start: int | None = None
    ) -> list[VideoFrame]:
        """Queue one frame (frames must come in display order); returns frames ready to show, in order.

        ``box`` lets a caller that tracked ahead in batches (the file command) hand in the padded face box, or None
        for no face; by default the stream's own tracker finds it. ``mel_start`` overrides the window's first mel
        step (the file command passes the original's ``int(i * 80 / fps)``, whose float rounding it must match).
        """
        wall = time.perf_counter()
        self.stats.frames_in += 1
        if box is _TRACK:
            box = self.tracker.update(frame.image, frame.pts)
        if box is None:
            self.stats.frames_without_face += 1
        self._video_now = max(self._video_now, frame.pts)
        start = self._mel_start(frame.pts) if mel_start is None else mel_start
        self._queue.append(_Pending(frame, box, start, wall))
        return self._pump()

    def flush(self) -> list[VideoFrame]:
        """End of stream: finish every queued frame (audio that never came is silence) and return them."""
        return self._pump(final=True)

    def poll(self) -> list[VideoFrame]:
        """Frames finished since the last call (a shared generator renders in the background)."""
        return self._pump()

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- scheduling ----------------------------------------------------------------------------------------
    def _audio_ready(self, item: _Pending) -> bool:
        return self._audio_total is not None or self.audio_end >= item.frame.pts + self.lookahead_s - _EPS

    def _stalled(self, item: _Pending) -> bool:
        """Audio for this frame is overdue by ``audio_wait_s`` of video time: go on with silence."""
        return not self._audio_ready(item) and self._video_now - item.frame.pts >= self.audio_wait_s - _EPS

    def _pump(self, final: bool = False) -> list[VideoFrame]:
        while True:
            ready: list[_Pending] = []
            for p in self._queue:
                if p.done or p.ticket is not None:
                    continue
                if len(ready) == self.batch_size or not (final or self._audio_ready(p) or self._stalled(p)):
                    break
                ready.append(p)
            if not ready:
                break
            oldest = ready[0].frame.pts
            # media "now" is the video clock: frames arrive in real time in a live session, audio may come in bursts
            due = final or len(ready) == self.batch_size or self._stalled(ready[0])
            due = due or self._video_now + self._slack >= oldest + self.max_latency_s - _EPS
            if not due:
                break
            self._run(ready)
        out = []
        while self._queue and self._settled(self._queue[0], wait=final):
            out.append(self._emit(self._queue.popleft()))
        self._trim_audio()
        return out

    def _run(self, batch: list[_Pending]) -> None:
        for p in batch:
            if not self._audio_ready(p):
                self.stats.frames_without_audio += 1
        faces = np.stack([crop_face(p.frame.image, p.box) for p in batch])
        mel = self._windows([p.mel_start for p in batch])
        if hasattr(self.backend, "submit"):  # a shared generator: hand the batch over, collect it in _settled
            ticket = self.backend.submit(mel, build_input(faces))
            for i, (p, crop) in enumerate(zip(batch, faces, strict=True)):
                p.ticket, p.crop = (ticket, i), crop
            self.stats.batches += 1
            self.stats.batch_sizes.append(len(batch))
            return
        t0 = time.perf_counter()
        pred = self.backend.infer(mel, build_input(faces))
        self.stats.infer_seconds += time.perf_counter() - t0
        for p, patch, crop in zip(batch, output_to_rgb(pred), faces, strict=True):
            p.output, p.crop = patch, crop
        self.stats.batches += 1
        self.stats.batch_sizes.append(len(batch))

    def _settled(self, p: _Pending, wait: bool) -> bool:
        """Whether this frame can leave; takes a shared generator's result (or skip) into it when there is one."""
        if p.ticket is None or p.done:
            return p.done
        ticket, i = p.ticket
        if not (ticket.ready or (wait and ticket.wait())):
            return False
        if ticket.error is not None:  # raised once; its frames then go out as they came
            for q in self._queue:
                if q.ticket is not None and q.ticket[0] is ticket:
                    q.ticket, q.skipped = None, True
                    self.stats.frames_failed += 1
            raise ticket.error
        if ticket.rendered[i]:
            p.output = output_to_rgb(ticket.output(i)[None])[0]
        else:
            p.skipped = True
            self.stats.frames_skipped_late += 1
        return True

    def _emit(self, p: _Pending) -> VideoFrame:
        self.stats.frames_out += 1
        if p.box is None or p.skipped:
            return p.frame
        image = self.blender.paste(p.frame.image, p.box, p.output, p.crop)
        return VideoFrame(image=image, pts=p.frame.pts, index=p.frame.index, source=p.frame.source)


class LipSyncStage(Stage):
    """The stream as a pipeline stage: takes VideoFrame, AudioChunk / SpeechChunk and ControlEvent items.

    Video and audio must share the session clock. FLUSH / END_OF_STREAM finish every queued frame and are passed
    on after them; other items pass through untouched. All compute runs on the stage's worker thread.
    """

    name = "lipsync"

    def __init__(self, build: Callable[[], LipSyncStream]) -> None:
        """``build`` makes the stream on the stage's worker thread, where its face detector then lives (as
        ``av.live.FrameSink`` does); a stream built elsewhere is handed in as ``lambda: stream``."""
        super().__init__()
        self._build = build
        self._stream: LipSyncStream | None = None
        self._wall_in: dict[tuple[int, float], float] = {}

    def _get(self) -> LipSyncStream:
        if self._stream is None:
            self._stream = self._build()
        return self._stream

    @property
    def stream(self) -> LipSyncStream | None:
        return self._stream

    def _push(self, item: VideoFrame | AudioChunk | SpeechChunk) -> list[VideoFrame]:
        stream = self._get()
        if isinstance(item, VideoFrame):
            self._wall_in[(item.index, item.pts)] = time.perf_counter()
            return stream.push_video(item)
        audio = item.audio if isinstance(item, SpeechChunk) else item
        return stream.push_audio(audio.samples, audio.pts, audio.sample_rate)

    def _yield(self, frames: list[VideoFrame]) -> list[VideoFrame]:
        for f in frames:
            wall_in = self._wall_in.pop((f.index, f.pts), None)
            if wall_in is not None:
                self.record(f.pts, f.pts, wall_in)
        return frames

    async def process(self, item: Frame) -> AsyncIterator[Frame]:
        if isinstance(item, VideoFrame | AudioChunk | SpeechChunk):
            for f in self._yield(await self.in_worker(self._push, item)):
                yield f
        elif isinstance(item, ControlEvent) and item.kind in (ControlKind.FLUSH, ControlKind.END_OF_STREAM):
            for f in self._yield(await self.in_worker(lambda: self._get().flush())):
                yield f
            yield item
        else:
            yield item

    async def flush(self) -> AsyncIterator[Frame]:
        if self._stream is not None:
            for f in self._yield(await self.in_worker(self._stream.flush)):
                yield f
