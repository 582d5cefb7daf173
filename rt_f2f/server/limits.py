"""Bounds on everything a remote party can make the server hold.

Every number a stranger on the network can push up (rooms, participants, body and SDP sizes, data-channel
messages, time spent connecting or silent) has a ceiling here, in one place, so a review can see all of them at
once and an operator can change them from the command line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Server-wide ceilings; the defaults suit one small machine serving a few rooms."""

    max_rooms: int = 50
    max_participants: int = 4  # per room; each listener gets max_participants - 1 remote slots
    max_body_bytes: int = 96 * 1024  # any HTTP request body
    max_sdp_bytes: int = 64 * 1024  # a browser offer with 8 m-lines is ~15 KB
    max_message_bytes: int = 4096  # one data-channel message
    max_messages_per_second: float = 20.0  # data-channel messages, sustained (bursts of twice that)
    max_bad_messages: int = 20  # malformed data-channel messages before the participant is dropped
    max_name_chars: int = 40
    max_pending_joins: int = 8  # offers being answered at once (ICE gathering, DTLS setup)
    connect_timeout_s: float = 15.0  # offer answered -> connection must be up by then
    idle_timeout_s: float = 8.0  # no media or message for this long -> the participant is gone
    empty_room_ttl_s: float = 600.0  # an empty room keeps its link alive this long
    room_ttl_s: float = 12 * 3600.0  # no room lives longer


@dataclass(frozen=True)
class MediaSettings:
    """Media knobs: codec choice, bitrate hints, buffer bounds and the translated-video delay."""

    video_codec: str | None = None  # "vp8" | "h264" | None (the browser's first choice)
    start_bitrate_kbps: int = 800  # x-google-start-bitrate: skips Chrome's slow ramp from ~300 kbps
    min_bitrate_kbps: int = 800  # x-google-min-bitrate: keeps 640x480 at full frame rate
    max_bitrate_kbps: int = 2500
    jitter_prebuffer_s: float = 0.04  # audio held before playout restarts after an underrun
    max_passthrough_audio_s: float = 0.2  # more than this queued for a listener -> oldest audio dropped
    max_translated_audio_s: float = 20.0  # translated speech backlog per listener before oldest is dropped
    max_decoded_backlog: int = 3  # decoded frames left waiting in aiortc's (unbounded) queue before dropping
    max_video_lag_s: float = 0.3  # incoming video later than this behind its own timeline is dropped (stale)
    engine_chunk_s: float = 0.06  # audio handed to a speech engine in 60 ms blocks (two 30 ms VAD frames)
    max_engine_input_s: float = 10.0  # audio waiting for a busy engine before the oldest is dropped
    initial_video_delay_s: float = 2.0  # translated video waits this long until a speech lag is measured
    min_video_delay_s: float = 0.3
    max_video_delay_s: float = 6.0


class TokenBucket:
    """Rate limit: ``rate`` events per second sustained, ``burst`` at once."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
