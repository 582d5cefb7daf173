"""Translated, lip-synced media for the listeners of one language: ``LipSyncFeed``.

The speaker's speech goes through the speech engine exactly as in ``TranslatedFeed`` (same bounded input queue,
resampling, captions, fallback and stats: the class extends it); what changes is the output. Translated speech and
the speaker's camera frames meet in the same scheduler and lip-sync code as ``rt-f2f translate --realtime``
(``rt_f2f.facetoface.LiveFaceToFace``): one output clock, output = input + D, speech never later than D_max after
its source, and every frame re-mouthed by a ``LipSyncStream`` for the translated audio that plays with it. A pacer
publishes audio and frames at their playout time on that clock, so a listener hears the translated words with the
frames rendered for them. Every frame reaches the pacer as captured well before its playout, and its re-mouthed
version replaces it if the generator finishes in time; frames the generator is predicted not to finish in time are
not sent to it at all (both counted). A slow generator costs mouth accuracy, never frames, delay or sync. Only a
frame that would go out more than 40 ms after the audio of its moment (ITU-R BT.1359 allows 45 ms) is dropped
(counted).

Timing for calls (``CallLipSyncConfig``):

- D = 2 s: only the picture waits D. Lip-sync makes the mouth follow the translated voice whatever that voice's lag,
  so D need not cover the speech engine; it covers what the picture itself needs: Wav2Lip's 0.2 s of audio after
  a frame, the batching latency (0.3 s) and a render budget (0.8 s) on a CPU that also runs ASR, MT and TTS.
  Faces that react two seconds late still read as a live conversation; a larger D only makes every nod later.
- D_max = 20 s: on 2 CPU cores the speech engine takes 5-15 s per clause (mouth-to-ear 12-17 s measured), so the
  file pipeline's 4 s would drop most speech. 20 s keeps every clause the engine delivers in its usual range and
  still drops what is so stale that an answer to it would make no sense. On a GPU machine lower both.
- 25 fps out (Wav2Lip's rate; the scheduler re-times any camera rate onto it), batches of 4 frames.

The generator is loaded once per server (``load_lipsync``) and shared by every feed; each feed has its own
``LipSyncStream`` (face tracker, audio buffer, queue), built on that feed's worker thread, where all its lip-sync
and face tracking run. The event loop only converts frames (``av.VideoFrame`` <-> RGB arrays: new arrays and new
frames, never a shared frame changed) and moves items.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from ..audio import StreamingResampler
from ..errors import RtF2fError
from ..facetoface import (
    OUTPUT_RATE,
    FaceToFaceConfig,
    FaceToFaceResult,
    FrameSink,
    LiveFaceToFace,
    build_scheduler,
)
from ..frames import AudioChunk, SpeechChunk, VideoFrame
from ..scheduler import AUDIO_EARLY_LIMIT
from .limits import MediaSettings
from .media import VIDEO_TIME_BASE, WEBRTC_RATE, Relay, spawn
from .translate import EngineFactory, FeedEvents, TranslatedFeed

log = logging.getLogger(__name__)

RENDER_LAG_WINDOW = 500  # recent frames behind the render-lag figure (20 s at 25 fps)


@dataclass(frozen=True)
class CallLipSyncConfig:
    """How lip-synced call media is timed; the module docstring says why these numbers."""

    delay_s: float = 2.0
    max_delay_s: float = 20.0
    fps: float = 25.0
    batch: int = 4  # frames per generator call
    batch_latency_s: float = 0.3  # media time a frame may wait for its batch (>= 0.225 s of audio Wav2Lip needs)
    render_budget_s: float = 0.8  # lead beyond the batching latency that frames get for their render
    max_render_lag_s: float = 0.0  # a frame whose render is predicted to land after its playout is not rendered
    # frames that would go out this long after the audio of their moment are dropped (5 ms inside BT.1359's 45 ms)
    late_frame_s: float = AUDIO_EARLY_LIMIT - 0.005

    def face_to_face(self) -> FaceToFaceConfig:
        return FaceToFaceConfig(
            delay=self.delay_s,
            max_delay=self.max_delay_s,
            fps=self.fps,
            realtime=True,
            provisional_frames=True,
            lipsync_batch=self.batch,
            max_render_lag=self.max_render_lag_s,
            render_budget=self.render_budget_s,
        )


@dataclass
class LipSyncModel:
    """The Wav2Lip generator, loaded once per server and shared by every feed (one ``LipSyncStream`` per feed)."""

    backend: Any
    backend_name: str
    checkpoint: Path
    config: CallLipSyncConfig

    def stream(self) -> Any:
        """A new stream for one feed (called on that feed's worker thread: its face detector lives there)."""
        from ..lipsync.stream import LipSyncStream, lookahead_s

        c = self.config
        # LipGAN reads more audio per frame (27 mel steps) than Wav2Lip: its frames may wait for it
        lookahead = lookahead_s(getattr(self.backend, "mel_window", 16))
        # Frames not sent to the generator do not advance the stream's clock, so it cannot trim old audio by itself;
        # a few seconds cover every frame it is given (audio is committed 0.2 s ahead of them).
        return LipSyncStream(
            self.backend,
            fps=c.fps,
            batch_size=c.batch,
            max_latency_s=max(c.batch_latency_s, lookahead + 0.075),
            max_buffer_s=3.0,
        )


def load_lipsync(
    checkpoint: str | Path, backend: str | None = None, config: CallLipSyncConfig | None = None
) -> LipSyncModel:
    """Load and warm up the generator; a missing or malformed checkpoint fails here, at server start."""
    from ..lipsync.backends import default_backend, load_backend

    config = config or CallLipSyncConfig()
    name = backend or default_backend(checkpoint)
    opts = {"max_batch": config.batch} if name.startswith("torch") else {}
    engine = load_backend(name, checkpoint, **opts)
    engine.warmup(config.batch)  # the first call's frames should not pay for lazy initialisation
    return LipSyncModel(engine, name, Path(checkpoint), config)


def lipsync_for_server(checkpoint: str | Path | None, backend: str | None = None) -> LipSyncModel | None:
    """The generator ``rt-f2f serve`` uses: ``checkpoint`` if given, else the model store's ``wav2lip`` when it is
    on disk (``rt-f2f models pull wav2lip`` or ``RT_F2F_MODEL_WAV2LIP``); None, said in one log line, otherwise."""
    if checkpoint is None:
        from ..models.store import get_store

        status = get_store().status("wav2lip")
        if status.where in ("env", "cache"):
            checkpoint = get_store().path("wav2lip")  # an env var pointing nowhere fails here, with its name
        elif backend is not None:
            raise RtF2fError(
                "--lipsync-backend given, but there is no Wav2Lip checkpoint",
                "pass --checkpoint_path wav2lip.pth, or run `rt-f2f models pull wav2lip`",
            )
        else:
            log.warning(
                "lip-sync off: translated calls show the original mouth, delayed. To enable it, pass "
                "--checkpoint_path wav2lip.pth, set RT_F2F_MODEL_WAV2LIP, or run `rt-f2f models pull wav2lip`"
            )
            return None
    return load_lipsync(checkpoint, backend)


class _Pacer:
    """Publishes output at its playout time (wall clock).

    Each frame comes first as captured and again if its re-mouthed version is ready (same pts): the version held at
    playout is shown, and a render that comes after that is discarded (counted). A frame that would go out more than
    ``late_frame_s`` after the audio of its moment (it reached the pacer late) is dropped (counted); a stalled event
    loop delays audio and frames alike, which keeps them in sync.
    """

    def __init__(self, audio: Relay[AudioChunk], video: Relay[av.VideoFrame], late_frame_s: float) -> None:
        self.audio, self.video = audio, video
        self.late_frame_s = late_frame_s
        self._heap: list[tuple[float, int, AudioChunk | int]] = []  # (due, order, audio chunk or frame key)
        self._frames: dict[int, av.VideoFrame] = {}  # frame key (pts in 90 kHz ticks) -> version to show
        self._shown = -1  # key of the last frame shown
        self._heard: deque[tuple[float, float, float]] = deque(maxlen=100)  # recent audio: (pts, end, wall out)
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self.stopped = False
        self.late_frames = 0
        self.late_renders = 0

    def put_audio(self, due: float, chunk: AudioChunk) -> None:
        if not self.stopped:
            heapq.heappush(self._heap, (due, next(self._order), chunk))
            self._wake.set()

    def put_frame(self, due: float, frame: av.VideoFrame) -> None:
        if self.stopped:
            return
        key = int(frame.pts)
        if key <= self._shown and key not in self._frames:
            self.late_renders += 1  # its moment has been shown already
            return
        if key not in self._frames:
            heapq.heappush(self._heap, (due, next(self._order), key))
            self._wake.set()
        self._frames[key] = frame

    async def run(self) -> None:
        while not self.stopped:
            if not self._heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self._heap[0][0] - time.monotonic()
            if wait > 0:
                self._wake.clear()  # an earlier item wakes us before the timeout
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                continue
            _, _, item = heapq.heappop(self._heap)
            if isinstance(item, AudioChunk):
                self.audio.publish(item)
                self._heard.append((item.pts, item.end, time.monotonic()))
                continue
            frame = self._frames.pop(item)
            self._shown = max(self._shown, item)
            if self._audio_ahead(float(frame.pts * frame.time_base)) > self.late_frame_s:
                self.late_frames += 1
            else:
                self.video.publish(frame)

    def _audio_ahead(self, pts: float) -> float:
        """How long ago the audio of output moment ``pts`` went out (0 when it has not yet)."""
        for start, end, wall in reversed(self._heard):
            if start <= pts < end:
                return time.monotonic() - (wall + pts - start)
            if end <= pts:
                break
        return 0.0

    def stop(self) -> None:
        self.stopped = True
        self._heap.clear()
        self._frames.clear()
        self._wake.set()


class LipSyncFeed(TranslatedFeed):
    """Translated speech and the speaker's lip-synced face, on one output clock (see the module docstring).

    Media clock: session time is the speaker's audio clock (``chunk.pts``), anchored to the wall clock at the first
    audio chunk; frames keep their own timestamps (the sender's 90 kHz clock), anchored to session time at the first
    frame, and the scheduler corrects drift between the two from their arrival times.
    """

    def __init__(
        self,
        speaker: str,
        source: str,
        target: str,
        settings: MediaSettings,
        events: FeedEvents,
        engine_factory: EngineFactory,
        model: LipSyncModel,
    ) -> None:
        super().__init__(speaker, source, target, settings, events, engine_factory)
        self._model = model
        self._config = model.config.face_to_face()
        self._result = FaceToFaceResult(render_lag=deque(maxlen=RENDER_LAG_WINDOW))
        self._pacer = _Pacer(self.audio, self.video, model.config.late_frame_s)
        self._to_listener = StreamingResampler(OUTPUT_RATE, WEBRTC_RATE)
        self._live: LiveFaceToFace | None = None
        self._origin = 0.0
        self._anchor: tuple[float, float] | None = None  # (frame media time, session time) of the reference frame
        self._frame_index = 0
        self.video_before_audio = 0

    # -- input -------------------------------------------------------------------------------------------------

    def push_audio(self, chunk: AudioChunk, wall: float) -> None:
        if self.state not in ("error", "closing", "closed"):
            if self._live is None:
                self._start_live(wall - chunk.end)
            self._live.note_audio(chunk.end, wall)
        super().push_audio(chunk, wall)

    def _start_live(self, origin: float) -> None:
        self._origin = origin
        scheduler = build_scheduler(self._config, self._model.config.batch_latency_s, OUTPUT_RATE, origin)
        sink = FrameSink(
            self._result,
            self._on_frame,
            self._model.stream,
            self._config,
            origin_wall=lambda: origin,
            on_audio=self._on_audio_out,
        )
        self._live = LiveFaceToFace(scheduler, sink)
        spawn(self._live.run(), self._tasks, f"lipsync-{self.speaker}-{self.target}")

    def push_video(self, frame: av.VideoFrame, wall: float) -> None:
        if self.state == "error":
            self.video.publish(frame)
            return
        if self._live is None or self.state in ("closing", "closed"):
            self.video_before_audio += 1  # no session clock yet: nothing to place the frame on
            return
        image = frame.to_ndarray(format="rgb24")  # a new array: the shared decoded frame is left as it is
        self._live.push_video(VideoFrame(image, self._session_pts(frame, wall), self._frame_index, self.speaker))
        self._frame_index += 1

    def _session_pts(self, frame: av.VideoFrame, wall: float) -> float:
        """The frame's own timestamp on the session clock; its arrival time when it has none or the sender's clock
        jumped (more than a second off the arrival time)."""
        arrived = wall - self._origin
        if frame.pts is None or frame.time_base is None:
            return arrived
        media = float(frame.pts * frame.time_base)
        if self._anchor is None or abs(self._anchor[1] + media - self._anchor[0] - arrived) > 1.0:
            self._anchor = (media, arrived)
        return self._anchor[1] + (media - self._anchor[0])

    # -- engine output -----------------------------------------------------------------------------------------

    def _on_speech(self, chunk: SpeechChunk) -> None:
        self._measure_lag(chunk)
        self.speech_out_s += chunk.audio.duration
        if self._live is not None:
            self._live.push_speech(chunk)

    # -- output ------------------------------------------------------------------------------------------------

    def _on_audio_out(self, chunk: AudioChunk) -> None:
        samples = self._to_listener.process(chunk.samples)
        out = AudioChunk(samples, WEBRTC_RATE, chunk.pts, source=self.speaker)
        self._pacer.put_audio(self._origin + chunk.pts, out)

    def _on_frame(self, frame: VideoFrame) -> None:
        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.image), format="rgb24")
        out.pts = round(frame.pts * VIDEO_TIME_BASE.denominator)
        out.time_base = VIDEO_TIME_BASE
        self._pacer.put_frame(self._origin + frame.pts, out)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        spawn(self._pacer.run(), self._tasks, f"pacer-{self.speaker}-{self.target}")
        self._engine_task = spawn(self._run(), self._tasks, f"engine-{self.speaker}-{self.target}")

    def _fall_back(self, detail: str) -> None:
        """The original media from now on (``TranslatedFeed`` passes it through in state ``error``)."""
        super()._fall_back(detail)
        self._pacer.stop()
        if self._live is not None:
            spawn(self._live.abort(), self._tasks, f"lipsync-stop-{self.speaker}-{self.target}")

    async def close(self) -> None:
        self._pacer.stop()
        if self._live is not None:
            await self._live.abort()
        await super().close()

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        sink = self._live.sink if self._live is not None else None
        counts = sink.counts() if sink is not None else {"rendered": 0, "skipped_late": 0, "without_face": 0}
        lags = self._result.render_lag
        stats.update(
            {
                "delay_s": self._config.delay if self.state != "error" else 0.0,
                "max_delay_s": self._config.max_delay,
                "lipsync": True,
                "lipsync_rendered": counts["rendered"],
                "lipsync_skipped_late": counts["skipped_late"],
                "lipsync_without_face": counts["without_face"],
                "lipsync_too_late": self._pacer.late_renders,
                "lipsync_overflow": sink.overflow if sink is not None else 0,
                "render_lag_p95_s": round(float(np.percentile(lags, 95)), 3) if lags else None,
                "video_dropped": self._pacer.late_frames,
            }
        )
        return stats
