"""A translated feed is an ``EngineRunner`` combined with one ``VideoPolicy``: ``EngineFeed``.

The runner owns everything about the speech engine (input blocks, load, run, fallback, lag); the policy owns what
listeners see and when the translated speech goes out with it: the original picture held back by the speech lag
(``translated.DelayedVideo``), or re-mouthed frames and speech on one output clock (``lipsync.LipSyncVideo``).
Neither knows the other; the feed wires them and keeps the state listeners are told about.

States: starting -> loading -> running; ``error`` when the engine fails or ends by itself (listeners then hear and
see the original, and are told why, rather than nothing); closing -> closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import av

from ...frames import AudioChunk, Caption, SpeechChunk
from ..limits import MediaSettings
from ..relay import Relay
from ..tasks import spawn
from .base import FeedEvents, FeedStats, ListenerFeed, PartStats
from .engine import EngineFactory, EngineRunner

_STOPPED = ("error", "closing", "closed")


class PolicyHost(Protocol):
    """What a video policy is built from: the relays it publishes on, the task set its background work joins, and
    names for those tasks. ``EngineFeed`` is one; a live event's translator worker hosts a policy without being a
    call feed (``rt_f2f.event.lipsync``)."""

    speaker: str
    audio: Relay[AudioChunk]
    video: Relay[av.VideoFrame]
    tasks: set[asyncio.Task]

    def name(self, what: str) -> str: ...


class VideoPolicy(Protocol):
    """What a translated feed does with the picture, and with the engine's speech on its way out."""

    def start(self) -> None:
        """Begin background work (``spawn`` it into the feed's ``tasks``)."""

    def push_audio(self, chunk: AudioChunk, wall: float) -> None:
        """The speaker's audio arrived (only while the feed translates): a clock reference for the policy."""

    def push_video(self, frame: av.VideoFrame, wall: float) -> None:
        """One decoded camera frame, in every state (after ``fall_back`` the original should go out)."""

    def speech(self, chunk: SpeechChunk) -> None:
        """Translated speech from the engine, to publish on ``feed.audio`` in time with the picture."""

    def lag(self, lag: float) -> None:
        """The engine's running average speech lag changed."""

    def fall_back(self) -> None:
        """The engine is gone: from now on the original media, with nothing added."""

    async def stop(self) -> None:
        """The feed is closing: stop publishing."""

    def clear(self) -> None:
        """The feed's tasks are gone: drop what is held."""

    @property
    def delay_s(self) -> float:
        """What the policy adds to mouth-to-ear delay now."""

    def stats(self) -> PartStats: ...


class EngineFeed(ListenerFeed):
    """The speaker's speech through a speech engine into ``target``; the picture as the feed's policy decides.

    A kind of feed is this class with ``policy_class`` set (``TranslatedFeed``, ``LipSyncFeed``): the policy is
    built from the feed (its relays, settings, speaker and task set) and ``policy_args``, which are the feed's
    arguments after ``engine_factory``.
    """

    mode = "translated"
    policy_class: Callable[..., VideoPolicy]

    def __init__(
        self,
        speaker: str,
        source: str,
        target: str,
        settings: MediaSettings,
        events: FeedEvents,
        engine_factory: EngineFactory,
        *policy_args: object,
    ) -> None:
        super().__init__(speaker, source, target, settings, events)
        self.tasks: set[asyncio.Task] = set()
        self.engine = EngineRunner(speaker, source, target, settings, engine_factory)
        self.policy = type(self).policy_class(self, *policy_args)
        self._engine_task: asyncio.Task | None = None

    def name(self, what: str) -> str:
        """A task name that says whose it is."""
        return f"{what}-{self.speaker}-{self.target}"

    # -- input -------------------------------------------------------------------------------------------------

    def push_audio(self, chunk: AudioChunk, wall: float) -> None:
        if self.state not in _STOPPED:
            self.policy.push_audio(chunk, wall)
        self.engine.heard(chunk.pts, wall)
        if self.state == "error":
            self.audio.publish(chunk)
        elif self.state == "running":
            self.engine.push(chunk)

    def push_video(self, frame: av.VideoFrame, wall: float) -> None:
        self.policy.push_video(frame, wall)

    # -- engine output (``engine.EngineListener``) ---------------------------------------------------------------

    def engine_running(self) -> None:
        self._set_state("running")

    def engine_lag(self, lag: float) -> None:
        self.policy.lag(lag)

    def engine_speech(self, chunk: SpeechChunk) -> None:
        self.policy.speech(chunk)

    def engine_caption(self, caption: Caption) -> None:
        self.events.caption(self, caption)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.policy.start()
        self._engine_task = spawn(self._run(), self.tasks, self.name("engine"))

    async def _run(self) -> None:
        self._set_state("loading")
        failed = await self.engine.run(self)
        if failed is not None:
            self._fall_back(failed)
        elif self.state == "running":
            self._fall_back("translation ended")

    def _fall_back(self, detail: str) -> None:
        self.engine.clear()
        self._set_state("error", detail)
        self.policy.fall_back()

    async def close(self) -> None:
        await self.policy.stop()
        self.state = "closing"  # from here on the feed reports nothing
        self.engine.end_input()
        tasks = list(self.tasks)
        if self._engine_task is not None and not self._engine_task.done():
            await asyncio.wait([self._engine_task], timeout=1.0)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        self.policy.clear()
        self.engine.clear()
        await super().close()

    def snapshot(self) -> FeedStats:
        return FeedStats(self.mode, self.state, self.policy.delay_s, (self.engine.stats(), self.policy.stats()))
