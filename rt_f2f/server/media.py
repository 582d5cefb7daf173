"""Media plumbing between aiortc and the translation feeds, with every buffer bounded.

aiortc hands decoded frames to a track through an unbounded ``asyncio.Queue`` and has no playout buffer of its
own, so a consumer that falls behind makes delay grow without limit and without a sign. Here each incoming track
is drained by one task that never blocks (``drain_track``), frames fan out through ``Relay`` into per-listener sinks
that drop their oldest content when full (``PcmFifo`` for audio, ``LatestFrames`` for video), and the outgoing
tracks (``SlotAudioTrack``, ``SlotVideoTrack``) pace themselves on the wall clock and renumber timestamps, so a
slot can switch from one speaker to another (or to nothing) without the encoder noticing.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import Generic, Protocol, TypeVar

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..audio import mono_samples

log = logging.getLogger(__name__)

WEBRTC_RATE = 48000  # Opus in WebRTC always runs at 48 kHz
ENGINE_RATE = 16000  # what the speech engine's VAD and ASR take
AUDIO_PTIME = 0.02  # one 20 ms packet per audio frame, as Opus in WebRTC sends
SAMPLES_PER_FRAME = int(WEBRTC_RATE * AUDIO_PTIME)
VIDEO_CLOCK = 90000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK)
AUDIO_TIME_BASE = Fraction(1, WEBRTC_RATE)

T = TypeVar("T")


class Sink(Protocol[T]):
    def put(self, item: T) -> None: ...


class Relay(Generic[T]):
    """One producer, many consumers: ``publish`` hands each item to every subscribed sink without waiting."""

    def __init__(self) -> None:
        self._sinks: list[Sink[T]] = []

    def subscribe(self, sink: Sink[T]) -> None:
        if sink not in self._sinks:
            self._sinks.append(sink)

    def unsubscribe(self, sink: Sink[T]) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    @property
    def subscribers(self) -> int:
        return len(self._sinks)

    def publish(self, item: T) -> None:
        for sink in list(self._sinks):
            sink.put(item)

    def clear(self) -> None:
        self._sinks.clear()


class PcmFifo:
    """Mono float32 samples waiting for playout: a jitter buffer with a ceiling.

    Playout (``read``) restarts only once ``prebuffer`` samples are queued after an underrun, which hides network
    jitter; when more than ``max_samples`` are queued the oldest are dropped, which caps the delay the buffer can
    add. Dropped audio is counted (``dropped``) so a late pipeline shows up in the stats instead of as drift.
    """

    TRIM_AFTER_READS = 50  # one second of 20 ms reads

    def __init__(self, max_samples: int, prebuffer: int = 0, target: int | None = None) -> None:
        self.max_samples = max(1, int(max_samples))
        self.prebuffer = max(0, int(prebuffer))
        self.target = target  # when set, a backlog above it for a whole second is trimmed back to it
        self._blocks: deque[np.ndarray] = deque()
        self._size = 0
        self._playing = False
        self._above_target = 0
        self.dropped = 0

    def __len__(self) -> int:
        return self._size

    def put(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if samples.size == 0:
            return
        self._blocks.append(samples)
        self._size += samples.size
        self._drop_oldest(self._size - self.max_samples)

    def _drop_oldest(self, excess: int) -> None:
        while excess > 0 and self._blocks:
            head = self._blocks[0]
            if head.size <= excess:
                self._blocks.popleft()
                cut = head.size
            else:
                self._blocks[0] = head[excess:]
                cut = excess
            self._size -= cut
            self.dropped += cut
            excess -= cut

    def read(self, n: int) -> np.ndarray | None:
        """Up to ``n`` samples zero-padded to ``n``, or None while the buffer is (re)filling.

        Sender and receiver clocks differ, so the backlog settles wherever the first burst left it; a jitter buffer
        that stays above ``target`` for a second is trimmed back, keeping passthrough delay near the target.
        """
        if not self._playing:
            if self._size == 0 or self._size < min(self.prebuffer, self.max_samples):
                return None
            self._playing = True
        if self.target is not None:
            self._above_target = self._above_target + 1 if self._size > self.target + n else 0
            if self._above_target >= self.TRIM_AFTER_READS:
                self._drop_oldest(self._size - self.target - n)
                self._above_target = 0
        out = np.zeros(n, dtype=np.float32)
        filled = 0
        while filled < n and self._blocks:
            head = self._blocks[0]
            take = min(n - filled, head.size)
            out[filled : filled + take] = head[:take]
            if take == head.size:
                self._blocks.popleft()
            else:
                self._blocks[0] = head[take:]
            self._size -= take
            filled += take
        if self._size == 0:
            self._playing = False
        return out

    def clear(self) -> None:
        self._blocks.clear()
        self._size = 0
        self._playing = False


class LatestFrames(Generic[T]):
    """A tiny queue that keeps only the newest ``maxlen`` items: for video, a late frame is worth nothing."""

    def __init__(self, maxlen: int = 2) -> None:
        self._items: deque[T] = deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self.dropped = 0

    def put(self, item: T) -> None:
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(item)
        self._ready.set()

    async def get(self) -> T:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def clear(self) -> None:
        self._items.clear()


class DecodedAudio:
    """Decoded WebRTC audio frames (any layout/format/rate) -> mono float32 at one rate."""

    def __init__(self, rate: int = WEBRTC_RATE) -> None:
        self.rate = rate
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)

    def convert(self, frame: av.AudioFrame) -> np.ndarray:
        frame.pts = None  # the resampler would otherwise insist on continuous timestamps across packet loss
        return mono_samples(self._resampler.resample(frame))


def audio_frame(samples: np.ndarray, pts: int, rate: int = WEBRTC_RATE) -> av.AudioFrame:
    """A mono s16 frame as aiortc's Opus encoder takes it."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = Fraction(1, rate)
    return frame


class StaleFrames:
    """Spots frames that come later than their media timestamps say they should.

    aiortc queues *encoded* frames for its decoder thread without a bound too: when decoding falls behind (a busy
    CPU), frames pile up there and later come out in a burst, each one on time for the drain but seconds late for
    a listener. A frame is stale when (arrival - media time) exceeds the best (smallest) such offset seen by more
    than ``max_lag_s``; the best offset creeps up slowly to follow clock drift, and restarts after a second of
    nothing but stale frames (the sender's clock jumped).
    """

    def __init__(self, max_lag_s: float, creep_s: float = 0.0005, reset_after_s: float = 1.0) -> None:
        self.max_lag_s = max_lag_s
        self.creep_s = creep_s
        self.reset_after_s = reset_after_s
        self._best: float | None = None
        self._stale_since: float | None = None

    def stale(self, frame: av.AudioFrame | av.VideoFrame, now: float) -> bool:
        if frame.pts is None or frame.time_base is None:
            return False
        offset = now - float(frame.pts * frame.time_base)
        if self._best is None or offset < self._best:
            self._best = offset
        else:
            self._best += self.creep_s
        if offset - self._best <= self.max_lag_s:
            self._stale_since = None
            return False
        if self._stale_since is None:
            self._stale_since = now
        elif now - self._stale_since > self.reset_after_s:
            self._best, self._stale_since = offset, None
            return False
        return True


async def drain_track(
    track: MediaStreamTrack,
    on_frame: Callable[[av.AudioFrame | av.VideoFrame], None],
    max_backlog: int = 3,
    on_drop: Callable[[int], None] | None = None,
    stale: StaleFrames | None = None,
) -> None:
    """Pull every decoded frame off ``track`` as it arrives, so aiortc's unbounded queue never grows.

    ``on_frame`` must not block. Should this task still fall behind (an event loop stalled by someone else),
    frames beyond ``max_backlog`` are discarded, oldest first, and reported through ``on_drop``; so are frames
    that ``stale`` finds late (a decoder catching up on a backlog).
    """
    queue: asyncio.Queue | None = getattr(track, "_queue", None)  # aiortc's RemoteStreamTrack decoded-frame queue
    try:
        while True:
            frame = await track.recv()
            if stale is not None and stale.stale(frame, time.monotonic()):
                if on_drop is not None:
                    on_drop(1)
                continue
            if queue is not None and queue.qsize() > max_backlog:
                dropped = 0
                while queue.qsize() > max_backlog:
                    item = queue.get_nowait()
                    if item is None:  # end of track: put it back for recv to see
                        queue.put_nowait(None)
                        break
                    dropped += 1
                if dropped and on_drop is not None:
                    on_drop(dropped)
            on_frame(frame)
    except MediaStreamError:
        return


class SlotAudioTrack(MediaStreamTrack):
    """Outgoing audio for one remote slot: 20 ms frames on the wall clock from a ``PcmFifo``, silence when empty.

    The clock is the track's own, so the RTP stream stays continuous whoever (if anyone) is in the slot; when the
    event loop stalls the clock jumps forward instead of sending a burst that would only add delay downstream.
    """

    kind = "audio"

    def __init__(self, fifo: PcmFifo) -> None:
        super().__init__()
        self.fifo = fifo
        self._start: float | None = None
        self._pts = 0
        self.frames_sent = 0
        self.silent_frames = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._pts += SAMPLES_PER_FRAME
            due = self._start + self._pts / WEBRTC_RATE
            if due - now > 0:
                await asyncio.sleep(due - now)
            elif now - due > 0.2:
                skipped = int((now - due) * WEBRTC_RATE) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME
                self._pts += skipped
        samples = self.fifo.read(SAMPLES_PER_FRAME)
        if samples is None:
            samples = np.zeros(SAMPLES_PER_FRAME, dtype=np.float32)
            self.silent_frames += 1
        self.frames_sent += 1
        return audio_frame(samples, self._pts)


class SlotVideoTrack(MediaStreamTrack):
    """Outgoing video for one remote slot: the newest frame from a ``LatestFrames`` sink, re-timed on the wall clock.

    An empty slot simply produces no frames (the sender then sends nothing, costing no CPU); frames keep their
    pixels but get fresh, strictly increasing 90 kHz timestamps, whichever speaker they come from.
    """

    kind = "video"

    def __init__(self, frames: LatestFrames[av.VideoFrame]) -> None:
        super().__init__()
        self.frames = frames
        self._t0 = time.monotonic()
        self._last_pts = -1
        self.frames_sent = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self.frames.get()
        pts = max(self._last_pts + 1, int((time.monotonic() - self._t0) * VIDEO_CLOCK))
        self._last_pts = pts
        out = _retimed(frame, pts)
        self.frames_sent += 1
        return out


def _retimed(frame: av.VideoFrame, pts: int) -> av.VideoFrame:
    """A copy of ``frame`` with new timestamps.

    One decoded frame goes to every listener of a speaker and each listener's encoder runs on its own thread, so
    frames are never re-timed in place; a copy of 640x480 yuv420p costs about 0.3 ms.
    """
    width, height = frame.width + frame.width % 2, frame.height + frame.height % 2
    if frame.format.name == "yuv420p" and (width, height) == (frame.width, frame.height):
        out = av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")
    else:  # another pixel format, or odd sizes that yuv420p cannot hold: a scaled copy
        out = frame.reformat(width=width, height=height, format="yuv420p")
    out.pts = pts
    out.time_base = VIDEO_TIME_BASE
    return out


class WallClockMap:
    """Media time (pts, seconds) -> wall time it arrived, for the last ``horizon`` seconds.

    The engine reports where in the source audio each clause started; this turns that back into the moment the
    server heard it, which is what the speech lag (and so the video delay) is measured from.
    """

    def __init__(self, horizon_s: float = 60.0) -> None:
        self.horizon_s = horizon_s
        self._pts: deque[float] = deque()
        self._wall: deque[float] = deque()

    def add(self, pts: float, wall: float) -> None:
        self._pts.append(pts)
        self._wall.append(wall)
        while self._pts and pts - self._pts[0] > self.horizon_s:
            self._pts.popleft()
            self._wall.popleft()

    def wall_at(self, pts: float) -> float | None:
        if not self._pts or pts < self._pts[0] - 1.0:
            return None
        i = bisect.bisect_right(self._pts, pts) - 1
        if i < 0:
            return self._wall[0] - (self._pts[0] - pts)
        return self._wall[i] + (pts - self._pts[i])


class VideoDelayLine:
    """Holds video frames until ``delay`` seconds after they arrived, then publishes them.

    The translated audio of a sentence comes out seconds after the sentence was spoken; delaying the picture by
    about the same amount keeps faces and voices together. Changing ``delay`` takes effect at once: frames wait
    longer (the picture pauses) or are released early (it skips ahead). At most ``max_frames`` wait.
    """

    def __init__(self, out: Relay[av.VideoFrame], delay: float, max_frames: int = 300) -> None:
        self.out = out
        self.delay = delay
        self._frames: deque[tuple[float, av.VideoFrame]] = deque(maxlen=max_frames)
        self._wake = asyncio.Event()
        self.dropped = 0

    def push(self, frame: av.VideoFrame, wall: float) -> None:
        if len(self._frames) == self._frames.maxlen:
            self.dropped += 1
        self._frames.append((wall, frame))
        self._wake.set()

    async def run(self) -> None:
        while True:
            if not self._frames:
                self._wake.clear()
                await self._wake.wait()
                continue
            wall, frame = self._frames[0]
            wait = wall + self.delay - time.monotonic()
            if wait > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=min(wait, 0.1))
                except TimeoutError:
                    pass
                continue
            self._frames.popleft()
            self.out.publish(frame)

    def clear(self) -> None:
        self._frames.clear()


async def cancel_and_wait(tasks: list[asyncio.Task] | set[asyncio.Task], timeout: float = 5.0) -> None:
    """Cancel tasks and wait (bounded) for them to finish, so nothing outlives its owner."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=timeout)


def spawn(coro: Awaitable, tasks: set[asyncio.Task], name: str) -> asyncio.Task:
    """Start a task that removes itself from ``tasks`` when done and logs (not loses) an unexpected exception."""
    task = asyncio.ensure_future(coro)
    task.set_name(name)
    tasks.add(task)

    def _done(t: asyncio.Task) -> None:
        tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("task %s failed", name, exc_info=t.exception())

    task.add_done_callback(_done)
    return task
