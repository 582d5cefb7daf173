"""Where the call server's media plumbing used to live; kept only for ``peer.py`` and ``rooms.py``.

The parts now live in modules named for what they hold: ``timebase`` (rates and time bases), ``relay`` (fan-out),
``buffers`` (bounded per-listener sinks), ``ingest`` (draining aiortc's incoming tracks), ``tracks`` (outgoing
slot tracks), ``clockmap`` (media time -> arrival time), ``feeds.delay_line`` and ``tasks``. New code imports from
those; this module goes once its last two importers do.
"""

from __future__ import annotations

from .buffers import LatestFrames, PcmFifo
from .ingest import DecodedAudio, StaleFrames, drain_track
from .tasks import cancel_and_wait, spawn
from .timebase import WEBRTC_RATE
from .tracks import SlotAudioTrack, SlotVideoTrack

__all__ = [
    "WEBRTC_RATE",
    "DecodedAudio",
    "LatestFrames",
    "PcmFifo",
    "SlotAudioTrack",
    "SlotVideoTrack",
    "StaleFrames",
    "cancel_and_wait",
    "drain_track",
    "spawn",
]
