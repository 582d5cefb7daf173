"""Listener feeds: what listeners of one language get from one speaker.

- ``base``: the ``ListenerFeed`` contract, its typed stats, and ``PassthroughFeed`` (languages match).
- ``engine``: ``EngineRunner``, the speech engine's side of a translated feed (input blocks, load, run, fallback,
  lag), the same for every translated feed.
- ``composed``: ``EngineFeed``, a runner combined with one ``VideoPolicy``; ``translated`` (the picture through a
  ``delay_line``) and ``lipsync`` (re-mouthed frames on one output clock, published by a ``pacer``) are its two
  policies, with ``lipsync_model`` loading the generator they share.
- ``factory``: ``default_feed_factory``, the one module that imports every kind of feed.

Nothing is imported here, so importing one feed does not import the others (or the lip-sync stack).
"""
