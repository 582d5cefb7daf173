"""``TranslatedFeed``: translated speech as soon as the engine has it, the original picture delayed to match.

The video delay follows the running average of the measured speech lag, clamped to the configured range, so faces
and voices stay roughly together without any lip-sync model.
"""

from __future__ import annotations

from dataclasses import dataclass

import av

from ...audio import StreamingResampler
from ...frames import AudioChunk, SpeechChunk
from ..relay import Relay
from ..tasks import spawn
from ..timebase import WEBRTC_RATE
from .composed import EngineFeed
from .delay_line import VideoDelayLine


@dataclass(frozen=True)
class DelayedVideoStats:
    video_dropped: int  # frames the delay line had no room for


class DelayedVideo:
    """The ``VideoPolicy`` of ``TranslatedFeed``: speech out at once (resampled to 48 kHz), frames through a
    ``VideoDelayLine`` whose delay follows the speech lag."""

    def __init__(self, feed: EngineFeed) -> None:
        self.feed = feed
        self.audio: Relay[AudioChunk] = feed.audio
        self.settings = feed.settings
        self.speaker = feed.speaker
        self.line = VideoDelayLine(feed.video, feed.settings.initial_video_delay_s)
        self._resamplers: dict[int, StreamingResampler] = {}

    def start(self) -> None:
        spawn(self.line.run(), self.feed.tasks, self.feed.name("video-delay"))

    def push_audio(self, chunk: AudioChunk, wall: float) -> None:
        pass  # the delay is set from measured lags, not from the audio clock

    def push_video(self, frame: av.VideoFrame, wall: float) -> None:
        self.line.push(frame, wall)

    def speech(self, chunk: SpeechChunk) -> None:
        rate = chunk.audio.sample_rate
        resampler = self._resamplers.get(rate)
        if resampler is None:
            resampler = self._resamplers[rate] = StreamingResampler(rate, WEBRTC_RATE)
        samples = resampler.process(chunk.audio.samples)
        self.audio.publish(AudioChunk(samples, WEBRTC_RATE, chunk.audio.pts, source=self.speaker))

    def lag(self, lag: float) -> None:
        s = self.settings
        self.line.delay = min(s.max_video_delay_s, max(s.min_video_delay_s, lag))

    def fall_back(self) -> None:
        self.line.delay = 0.0

    async def stop(self) -> None:
        pass  # frames held keep going out until the feed's tasks are cancelled

    def clear(self) -> None:
        self.line.clear()

    @property
    def delay_s(self) -> float:
        return round(self.line.delay, 3)

    def stats(self) -> DelayedVideoStats:
        return DelayedVideoStats(video_dropped=self.line.dropped)


class TranslatedFeed(EngineFeed):
    """The speaker's speech through a ``SpeechEngine`` into ``target``; the picture delayed to match.

    ``TranslatedFeed(speaker, source, target, settings, events, engine_factory)``.
    """

    policy_class = DelayedVideo
