"""Bounds on everything a remote party can make the server hold.

Every number a stranger on the network can push up (rooms, participants, body and SDP sizes, data-channel
messages, time spent connecting or silent) has a ceiling here, in one place, so a review can see all of them at
once and an operator can change them from the command line.
"""

from __future__ import annotations

import time
from collections import OrderedDict
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
    empty_room_ttl_s: float = 120.0  # an empty room keeps its link alive this long (never joined: the same)
    room_ttl_s: float = 12 * 3600.0  # no room lives longer
    max_json_depth: int = 16  # nesting of any JSON document (HTTP body or data-channel message)
    # one client address: requests per second sustained (bursts of ``client_burst``), rooms it holds at once
    client_requests_per_second: float = 2.0
    client_burst: int = 20
    max_rooms_per_client: int = 5
    max_tracked_clients: int = 10000  # addresses remembered for rate limiting (least recently seen forgotten)
    header_timeout_s: float = 10.0  # a connection must deliver a request's headers this soon (slowloris)
    body_timeout_s: float = 10.0  # and its body this soon after the headers
    retry_after_s: int = 30  # what a 503 or 429 tells the client to wait
    # decoded video: the largest picture one participant may send, and all participants' together
    max_video_pixels: int = 1280 * 720
    max_total_video_pixels: int = 24 * 1280 * 720


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
    engine_input_stall_s: float = 2.0  # no speaker audio for this long: the engine closes the sentence it heard
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

    def wait_s(self) -> float:
        """Seconds until the next event would be allowed."""
        if self.rate <= 0:
            return float("inf")
        tokens = min(self.burst, self._tokens + (self._clock() - self._last) * self.rate)
        return max(0.0, (1.0 - tokens) / self.rate)


class ClientLimiter:
    """Per-address token buckets, so one client (one script, one page in many tabs) cannot take every room.

    Remembers at most ``max_clients`` addresses, forgetting the least recently seen: an attacker with many addresses
    can reset buckets, never grow this table.
    """

    def __init__(self, rate: float, burst: float, max_clients: int, clock=time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, address: str) -> bool:
        bucket = self._buckets.pop(address, None)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, self._clock)
        self._buckets[address] = bucket
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return bucket.allow()

    def wait_s(self, address: str) -> float:
        """Seconds until ``address`` has a token again (0 when it has one now)."""
        bucket = self._buckets.get(address)
        return 0.0 if bucket is None else bucket.wait_s()
