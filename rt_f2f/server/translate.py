"""Where the listener feeds used to live; kept only for ``app.py`` and ``rooms.py``.

The feeds are in ``rt_f2f.server.feeds`` (``base``, ``engine``, ``translated``, ``lipsync``, ``factory``); new code
imports from there, and this module goes once its last two importers do.
"""

from __future__ import annotations

from .feeds.base import FeedFactory, ListenerFeed
from .feeds.factory import default_feed_factory

__all__ = ["FeedFactory", "ListenerFeed", "default_feed_factory"]
