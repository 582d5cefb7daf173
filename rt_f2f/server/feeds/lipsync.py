"""Translated, lip-synced media for the listeners of one language: ``LipSyncFeed``.

The speaker's speech goes through the speech engine as in every translated feed (``engine.EngineRunner``); what
this feed's video policy (``LipSyncVideo``) changes is the output. Translated speech and the speaker's camera frames
meet in the same scheduler and lip-sync code as ``rt-f2f translate --realtime`` (``rt_f2f.av``): one output
clock, output = input + D, speech never later than D_max after its source, and every frame re-mouthed by a
``LipSyncStream`` for the translated audio that plays with it. A ``pacer.Pacer`` publishes audio and frames at
their playout time on that clock, so a listener hears the translated words with the frames rendered for them. Every
frame reaches the pacer as captured well before its playout, and its re-mouthed version replaces it if the generator
finishes in time; frames the generator is predicted not to finish in time are not sent to it at all (both counted).
A slow generator costs mouth accuracy, never frames, delay or sync. Only a frame that would go out more than 40 ms
after the audio of its moment (ITU-R BT.1359 allows 45 ms) is dropped (counted). ``lipsync_model`` says how the
timing was chosen.

All lip-sync and face tracking run on the feed's worker thread; the event loop only converts frames
(``av.VideoFrame`` <-> RGB arrays: new arrays and new frames, never a shared frame changed) and moves items.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import av
import numpy as np

from ...audio import StreamingResampler
from ...av.config import OUTPUT_RATE, FaceToFaceResult, build_scheduler
from ...av.live import FrameSink, LiveFaceToFace
from ...frames import AudioChunk, SpeechChunk, VideoFrame
from ..tasks import spawn
from ..timebase import VIDEO_TIME_BASE, WEBRTC_RATE
from .composed import EngineFeed, PolicyHost
from .lipsync_model import LipSyncModel
from .pacer import Pacer

RENDER_LAG_WINDOW = 500  # recent frames behind the render-lag figure (20 s at 25 fps)


@dataclass(frozen=True)
class LipSyncStats:
    max_delay_s: float
    lipsync_rendered: int
    lipsync_skipped_late: int  # predicted to miss their playout: sent with the original mouth
    lipsync_without_face: int
    lipsync_too_late: int  # rendered, but after their moment was shown
    lipsync_overflow: int
    render_lag_p95_s: float | None
    video_dropped: int  # frames that would have gone out too long after their audio
    lipsync: bool = True


class LipSyncVideo:
    """The ``VideoPolicy`` of ``LipSyncFeed``.

    Media clock: session time is the speaker's audio clock (``chunk.pts``), anchored to the wall clock at the first
    audio chunk; frames keep their own timestamps (the sender's 90 kHz clock), anchored to session time at the first
    frame, and the scheduler corrects drift between the two from their arrival times.
    """

    def __init__(self, feed: PolicyHost, model: LipSyncModel) -> None:
        self.feed = feed
        self.model = model
        self.video = feed.video
        self.config = model.config.face_to_face()
        self.result = FaceToFaceResult(render_lag=deque(maxlen=RENDER_LAG_WINDOW))
        self.pacer = Pacer(feed.audio, feed.video, model.config.late_frame_s)
        self._to_listener = StreamingResampler(OUTPUT_RATE, WEBRTC_RATE)
        self.live: LiveFaceToFace | None = None
        self._origin = 0.0
        self._anchor: tuple[float, float] | None = None  # (frame media time, session time) of the reference frame
        self._frame_index = 0
        self._fell_back = False
        self._stopped = False
        self.video_before_audio = 0

    def start(self) -> None:
        spawn(self.pacer.run(), self.feed.tasks, self.feed.name("pacer"))

    # -- input -------------------------------------------------------------------------------------------------

    def push_audio(self, chunk: AudioChunk, wall: float) -> None:
        if self.live is None:
            self._start_live(wall - chunk.end)
        self.live.note_audio(chunk.end, wall)

    def _start_live(self, origin: float) -> None:
        self._origin = origin
        scheduler = build_scheduler(self.config, self.model.config.batch_latency_s, OUTPUT_RATE, origin)
        sink = FrameSink(
            self.result,
            self._on_frame,
            self.model.stream,
            self.config,
            origin_wall=lambda: origin,
            on_audio=self._on_audio_out,
        )
        self.live = LiveFaceToFace(scheduler, sink)
        spawn(self.live.run(), self.feed.tasks, self.feed.name("lipsync"))

    def push_video(self, frame: av.VideoFrame, wall: float) -> None:
        if self._fell_back and not self._stopped:
            self.video.publish(frame)
            return
        if self.live is None or self._stopped:
            self.video_before_audio += 1  # no session clock yet: nothing to place the frame on
            return
        image = frame.to_ndarray(format="rgb24")  # a new array: the shared decoded frame is left as it is
        self.live.push_video(VideoFrame(image, self._session_pts(frame, wall), self._frame_index, self.feed.speaker))
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

    def speech(self, chunk: SpeechChunk) -> None:
        if self.live is not None:
            self.live.push_speech(chunk)

    def lag(self, lag: float) -> None:
        pass  # the mouth follows the translated voice whatever its lag: the picture waits D, not the lag

    # -- output ------------------------------------------------------------------------------------------------

    def _on_audio_out(self, chunk: AudioChunk) -> None:
        samples = self._to_listener.process(chunk.samples)
        out = AudioChunk(samples, WEBRTC_RATE, chunk.pts, source=self.feed.speaker)
        self.pacer.put_audio(self._origin + chunk.pts, out)

    def _on_frame(self, frame: VideoFrame) -> None:
        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.image), format="rgb24")
        out.pts = round(frame.pts * VIDEO_TIME_BASE.denominator)
        out.time_base = VIDEO_TIME_BASE
        self.pacer.put_frame(self._origin + frame.pts, out)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def fall_back(self) -> None:
        """The original media from now on (the feed passes the audio through, this the frames)."""
        self._fell_back = True
        self.pacer.stop()
        if self.live is not None:
            spawn(self.live.abort(), self.feed.tasks, self.feed.name("lipsync-stop"))

    async def stop(self) -> None:
        self._stopped = True
        self.pacer.stop()
        if self.live is not None:
            await self.live.abort()

    def clear(self) -> None:
        pass  # the pacer dropped everything it held when it stopped

    @property
    def delay_s(self) -> float:
        return 0.0 if self._fell_back else self.config.delay

    def stats(self) -> LipSyncStats:
        sink = self.live.sink if self.live is not None else None
        counts = sink.counts() if sink is not None else {"rendered": 0, "skipped_late": 0, "without_face": 0}
        lags = self.result.render_lag
        return LipSyncStats(
            max_delay_s=self.config.max_delay,
            lipsync_rendered=counts["rendered"],
            lipsync_skipped_late=counts["skipped_late"],
            lipsync_without_face=counts["without_face"],
            lipsync_too_late=self.pacer.late_renders,
            lipsync_overflow=sink.overflow if sink is not None else 0,
            render_lag_p95_s=round(float(np.percentile(lags, 95)), 3) if lags else None,
            video_dropped=self.pacer.late_frames,
        )


class LipSyncFeed(EngineFeed):
    """Translated speech and the speaker's lip-synced face, on one output clock (see the module docstring).

    ``LipSyncFeed(speaker, source, target, settings, events, engine_factory, model)``: ``model`` is the
    ``LipSyncModel`` every feed of the server shares.
    """

    policy_class = LipSyncVideo
