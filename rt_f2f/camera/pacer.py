"""The output clock: frames and audio leave for every output at their playout time, ``origin + pts``.

The face-to-face core commits audio and frames ahead of playout (lip-sync needs the lead); the pacer holds them and
hands them on when they are due. Output is a fixed grid, as a webcam and a Y4M file need: slot ``k`` plays at output
pts ``start + k / fps`` and gets exactly one frame, the newest version of that slot's frame that arrived in time
(a re-mouthed version replaces the provisional one). A slot whose frame has not come by its time repeats the
previous picture (a freeze, counted), before the first frame a black one (counted); a version that arrives after
its slot was shown is discarded (counted). Audio goes out as one continuous run of samples from output pts
``start``, each sink getting samples ``ahead_s`` before they play (a sound device picks them by time itself; a file
takes them at playout, so it ends exactly where the pictures end). Both sinks of a run therefore start at the same
output pts and hold the same span: frame ``k`` of the Y4M and sample ``k * rate / fps`` of the WAV are one moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..av.schedule import AUDIO_EARLY_LIMIT, AUDIO_LATE_LIMIT
from ..frames import AudioChunk, VideoFrame
from .audio_out import AudioSink
from .video_out import VideoSink


@dataclass
class OffsetLog:
    """A/V offsets of the frames sent, kept in bounded memory however long the run: 5-second windows (min, max,
    count), totals, the recent ones (status line) and a bounded sample for the median."""

    window_s: float = 5.0
    windows: list[dict] = field(default_factory=list)
    count: int = 0
    inside: int = 0  # inside ITU-R BT.1359
    low: float = math.inf
    high: float = -math.inf
    recent: deque = field(default_factory=lambda: deque(maxlen=25))
    sample: deque = field(default_factory=lambda: deque(maxlen=20_000))

    def add(self, pts: float, offset: float) -> None:
        start = math.floor(pts / self.window_s) * self.window_s
        if not self.windows or self.windows[-1]["from_s"] != start:
            self.windows.append({"from_s": start, "min_s": offset, "max_s": offset, "frames": 0})
        window = self.windows[-1]
        window["min_s"], window["max_s"] = min(window["min_s"], offset), max(window["max_s"], offset)
        window["frames"] += 1
        self.count += 1
        self.inside += -AUDIO_EARLY_LIMIT <= offset <= AUDIO_LATE_LIMIT
        self.low, self.high = min(self.low, offset), max(self.high, offset)
        self.recent.append(offset)
        self.sample.append(offset)


@dataclass
class PacerStats:
    slots: int = 0  # frames sent to each video sink
    fresh: int = 0  # slots that got their own frame
    frozen: int = 0  # slots whose frame was not there in time: the previous picture again
    filler: int = 0  # slots before any frame existed: black
    late_versions: int = 0  # frames (or re-mouthed versions) that came after their slot was shown
    audio_late_chunks: int = 0  # audio that reached the pacer after its playout time (written in place anyway)
    audio_missing_s: float = 0.0  # output audio that never came (zeros at the end of a file)
    send_late_max: float = 0.0  # seconds after its due time the latest frame left
    send_late: deque = field(default_factory=lambda: deque(maxlen=20_000))  # recent ones, for the p95
    offsets: OffsetLog = field(default_factory=OffsetLog)


class OutputPacer:
    def __init__(
        self,
        origin: float,
        start_pts: float,
        fps: float,
        rate: int,
        size: tuple[int, int],
        video_sinks: list[VideoSink],
        audio_sinks: list[AudioSink],
        end_slot: int | None = None,
        offset_of: Callable[[int], float | None] = lambda slot: None,
        audio_late: Callable[[], float] = lambda: 0.0,
        live_video: bool = False,
    ) -> None:
        """``offset_of(slot)``: the scheduler's A/V offset of the fresh frame of a slot (None: none known);
        ``audio_late()``: how late the sound devices play the audio of now; ``live_video``: frames go to a device,
        so how late one leaves shifts it against the audio (files are positional: it does not)."""
        self.origin, self.start_pts, self.fps, self.rate = origin, start_pts, fps, rate
        self.width, self.height = size
        self.video_sinks, self.audio_sinks = video_sinks, audio_sinks
        self.end_slot = end_slot
        self.offset_of, self.audio_late, self.live_video = offset_of, audio_late, live_video
        self.next_slot = 0
        self.stats = PacerStats()
        self._frames: dict[int, VideoFrame] = {}
        self._last: tuple[np.ndarray, int] | None = None  # (picture, slot it belongs to)
        self._audio: deque[tuple[int, np.ndarray]] = deque()  # (first sample, samples) in order
        self._released = [0] * len(audio_sinks)  # next sample each audio sink gets
        self._wake = asyncio.Event()
        self._waited = -1  # the last slot the pacer held back for, once, waiting on the core
        self.done = asyncio.Event()

    # -- input from the face-to-face core ------------------------------------------------------------------------

    def slot_of(self, pts: float) -> int:
        return round((pts - self.start_pts) * self.fps)

    def due(self, slot: int) -> float:
        return self.origin + self.start_pts + slot / self.fps

    def put_frame(self, frame: VideoFrame) -> None:
        slot = self.slot_of(frame.pts)
        if slot < self.next_slot:
            self.stats.late_versions += 1
            return
        self._frames[slot] = frame  # the newest version of a slot wins
        self._wake.set()

    def put_audio(self, chunk: AudioChunk) -> None:
        start = round((chunk.pts - self.start_pts) * self.rate)
        if start < 0:
            return  # before the output starts (the scheduler never emits any)
        if time.monotonic() > self.origin + chunk.pts:
            self.stats.audio_late_chunks += 1
        self._audio.append((start, np.asarray(chunk.samples, np.float32)))
        self._wake.set()

    # -- output ----------------------------------------------------------------------------------------------------

    def _send_slot(self, now: float) -> None:
        k = self.next_slot
        frame = self._frames.pop(k, None)
        for stale in [s for s in self._frames if s < k]:
            del self._frames[stale]
            self.stats.late_versions += 1
        if frame is not None:
            self._last = (np.ascontiguousarray(frame.image), frame.index)
            self.stats.fresh += 1
            shown = frame.index
        elif self._last is not None:
            self.stats.frozen += 1
            shown = -1
        else:
            self._last = (np.zeros((self.height, self.width, 3), np.uint8), -1)
            self.stats.filler += 1
            shown = -1
        image = self._last[0]
        if image.shape[:2] != (self.height, self.width):
            import cv2

            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        pts = self.start_pts + k / self.fps
        for sink in self.video_sinks:
            sink.send(image, pts)
        late = now - self.due(k)
        self.stats.slots += 1
        self.stats.send_late.append(late)
        self.stats.send_late_max = max(self.stats.send_late_max, late)
        offset = self.offset_of(shown) if shown >= 0 else None
        if offset is not None:  # a fresh frame: the scheduler's offset plus what the outputs add
            self.stats.offsets.add(pts, offset + self.audio_late() - (late if self.live_video else 0.0))
        self.next_slot += 1

    def _release_audio(self, now: float, until_n: int | None = None) -> None:
        for i, sink in enumerate(self.audio_sinks):
            target = until_n
            if target is None:
                target = math.floor((now + sink.ahead_s - self.origin - self.start_pts) * self.rate)
            if self.end_slot is not None:
                target = min(target, self.end_samples(self.end_slot))
            cursor = self._released[i]
            for start, samples in self._audio:
                if start >= target:
                    break
                lo, hi = max(start, cursor), min(start + samples.size, target)
                if hi > lo:
                    sink.write(samples[lo - start : hi - start], lo)
                    cursor = hi
            self._released[i] = max(cursor, self._released[i])
        floor = min(self._released, default=math.inf)
        while self._audio and self._audio[0][0] + self._audio[0][1].size <= floor:
            self._audio.popleft()

    def end_samples(self, slots: int) -> int:
        return round(slots * self.rate / self.fps)

    def tick(self, now: float, patient: bool = False) -> bool:
        """Send everything due by ``now``. ``patient``: stop at a due slot whose frame has not come, once (False
        is returned): after a stall of the event loop the core may hold that frame, ready to hand over as soon as
        its task runs; the caller lets it run and ticks again, and then the slot is sent, frozen if still empty."""
        while (self.end_slot is None or self.next_slot < self.end_slot) and self.due(self.next_slot) <= now:
            k = self.next_slot
            if patient and k not in self._frames and self._last is not None and self._waited != k:
                self._waited = k
                self._release_audio(now)
                return False
            self._send_slot(now)
        self._release_audio(now)
        if self.end_slot is not None and self.next_slot >= self.end_slot:
            self.done.set()
        return True

    async def run(self) -> None:
        """Pace until ``end_slot`` (then ``done`` is set) or until cancelled."""
        while not self.done.is_set():
            now = time.monotonic()
            if not self.tick(now, patient=True):
                await asyncio.sleep(0.002)  # let the core's task run first: it is due too
                continue
            if self.done.is_set():
                return
            wait = min(self.due(self.next_slot) - time.monotonic(), 0.01)
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)

    def finish(self, ok: bool = True) -> int:
        """End the outputs at the last slot sent: every audio sink gets the samples up to that moment (zeros,
        counted, where none came) and closes there. Returns the number of slots."""
        self.end_slot = self.next_slot
        end_n = self.end_samples(self.next_slot)
        if ok:
            self._release_audio(time.monotonic(), end_n)
        missing = 0
        for i, sink in enumerate(self.audio_sinks):
            missing = max(missing, end_n - self._released[i])
            sink.close(end_n, ok)
        self.stats.audio_missing_s = max(0, missing) / self.rate if ok else 0.0
        for sink in self.video_sinks:
            sink.close(ok)
        return self.next_slot
