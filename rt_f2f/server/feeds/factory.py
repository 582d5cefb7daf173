"""``default_feed_factory``: which feed serves a (speaker, listener language); the one module importing them all."""

from __future__ import annotations

from ..limits import MediaSettings
from .base import FeedEvents, FeedFactory, ListenerFeed, PassthroughFeed
from .engine import EngineFactory, speech_engine_factory
from .lipsync import LipSyncFeed
from .lipsync_model import LipSyncModel
from .translated import TranslatedFeed


def default_feed_factory(
    engine_factory: EngineFactory | None = None, lipsync: LipSyncModel | None = None
) -> FeedFactory:
    """Passthrough when the languages match; otherwise a ``LipSyncFeed`` when a lip-sync model is given (loaded
    once and shared by every feed), else a ``TranslatedFeed``."""
    engines = engine_factory or speech_engine_factory()

    def make(speaker: str, source: str, target: str, settings: MediaSettings, events: FeedEvents) -> ListenerFeed:
        if source == target:
            return PassthroughFeed(speaker, source, target, settings, events)
        if lipsync is not None:
            return LipSyncFeed(speaker, source, target, settings, events, engines, lipsync)
        return TranslatedFeed(speaker, source, target, settings, events, engines)

    return make
