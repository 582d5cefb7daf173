"""The seam between the call server and translation: one ``ListenerFeed`` per (speaker, listener language).

A feed takes one speaker's decoded media as it arrives and publishes what listeners of one language should get:
audio (48 kHz mono float32 blocks) on ``feed.audio``, video (``av.VideoFrame``) on ``feed.video``, and captions and
status changes through ``FeedEvents``. Listeners of that language all subscribe to the same feed, so each speech
engine runs once per (speaker, target language), however many people listen. Other feeds implement the same
four methods; pass their factory as ``feed_factory`` to the app.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol

import av

from ...frames import AudioChunk, Caption
from ..limits import MediaSettings
from ..relay import Relay

StatValue = str | float | int | bool | None


class PartStats(Protocol):
    """A dataclass of figures from one part of a feed (its engine, its video policy)."""

    __dataclass_fields__: dict


@dataclass(frozen=True)
class FeedStats:
    """What a feed reports to its listeners' overlay; ``delay_s`` is what it adds to mouth-to-ear delay.

    The parts' figures are flattened into one dict on the wire (``as_dict``); no part may reuse another's name.
    """

    mode: str
    state: str
    delay_s: float
    parts: tuple[PartStats, ...] = ()

    def as_dict(self) -> dict[str, StatValue]:
        out: dict[str, StatValue] = {"mode": self.mode, "state": self.state, "delay_s": self.delay_s}
        for part in self.parts:
            for f in fields(part):
                if f.name in out:
                    raise ValueError(f"{type(part).__name__}.{f.name} repeats a figure already reported")
                out[f.name] = getattr(part, f.name)
        return out


class FeedEvents(Protocol):
    """Where a feed reports what is not media (the room routes these to the feed's listeners)."""

    def caption(self, feed: ListenerFeed, caption: Caption) -> None: ...

    def status(self, feed: ListenerFeed, state: str, detail: str = "") -> None: ...


class ListenerFeed(ABC):
    """One speaker's media, as heard by listeners of ``target`` language.

    ``push_audio`` / ``push_video`` are called on the event loop for every incoming frame and must not block
    (heavy work belongs on a worker thread); output goes to ``audio`` / ``video`` relays. ``start`` begins any
    background work, ``close`` ends all of it. One decoded frame is handed to every feed of its speaker, and one
    published frame to every listener: neither is ever changed in place (make a new frame to change pixels).
    """

    mode = "feed"

    def __init__(self, speaker: str, source: str, target: str, settings: MediaSettings, events: FeedEvents) -> None:
        self.speaker = speaker
        self.source = source
        self.target = target
        self.settings = settings
        self.events = events
        self.audio: Relay[AudioChunk] = Relay()
        self.video: Relay[av.VideoFrame] = Relay()
        self.state = "starting"

    @abstractmethod
    def push_audio(self, chunk: AudioChunk, wall: float) -> None:
        """One block of the speaker's audio: mono float32 at 48 kHz, ``chunk.pts`` on the speaker's clock."""

    @abstractmethod
    def push_video(self, frame: av.VideoFrame, wall: float) -> None:
        """One decoded frame of the speaker's camera, received at ``wall`` (``time.monotonic()``)."""

    async def start(self) -> None:
        self._set_state("ready")

    async def close(self) -> None:
        self.audio.clear()
        self.video.clear()
        self.state = "closed"

    def snapshot(self) -> FeedStats:
        """This feed's figures, typed."""
        return FeedStats(self.mode, self.state, 0.0)

    def stats(self) -> dict[str, StatValue]:
        """``snapshot()`` as the JSON object the listeners' overlay gets."""
        return self.snapshot().as_dict()

    def _set_state(self, state: str, detail: str = "") -> None:
        if self.state in ("closing", "closed"):
            return
        self.state = state
        self.events.status(self, state, detail)


FeedFactory = Callable[[str, str, str, MediaSettings, FeedEvents], ListenerFeed]


class PassthroughFeed(ListenerFeed):
    """Speaker and listener share a language: the original voice and picture, with nothing added."""

    mode = "passthrough"

    def push_audio(self, chunk: AudioChunk, wall: float) -> None:
        self.audio.publish(chunk)

    def push_video(self, frame: av.VideoFrame, wall: float) -> None:
        self.video.publish(frame)
