"""aiortc peers against Janus: publish tracks into a VideoRoom, watch a Streaming mountpoint.

Janus offers when we watch (we answer) and answers when we publish (we offer). aiortc gathers every ICE candidate
before ``setLocalDescription`` returns, so no trickle is needed in either direction. Whatever watches records
what arrives with wall-clock arrival times (audio) and every data-channel message, which is all the tests, the
benchmark and the source ASR need.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel

from ..server.ingest import DecodedAudio, drain_track
from ..server.peer import ice_configuration
from ..server.tasks import cancel_and_wait
from ..server.timebase import WEBRTC_RATE
from .janus_client import JanusHandle, JanusSession
from .janus_process import JanusError

log = logging.getLogger(__name__)

DATA_LABEL = "JanusDataChannel"


async def _connected(pc: RTCPeerConnection, timeout: float) -> None:
    """Wait until ICE + DTLS are up (``connectionState == connected``) or fail clearly."""
    done = asyncio.Event()

    @pc.on("connectionstatechange")
    def _change() -> None:
        if pc.connectionState in ("connected", "failed", "closed"):
            done.set()

    if pc.connectionState != "connected":
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
    if pc.connectionState != "connected":
        raise JanusError(f"WebRTC to Janus did not connect within {timeout:.0f} s (state {pc.connectionState})",
                         "Janus needs a non-loopback interface for ICE (see the README's event section)")  # fmt: skip


@dataclass
class Publisher:
    """One feed in a VideoRoom: the peer connection that sends it and the feed id Janus knows it by."""

    session: JanusSession
    handle: JanusHandle
    pc: RTCPeerConnection
    room: int
    feed_id: int
    mids: dict[str, str]  # kind -> mid of our m-line

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.handle.request({"request": "leave"}, timeout=2.0)
        await self.pc.close()
        await self.handle.detach()


async def publish(
    session: JanusSession, room: int, display: str, tracks: list[MediaStreamTrack], timeout: float = 15.0
) -> Publisher:
    """Join ``room`` as a publisher named ``display`` and send ``tracks``; return once media flows."""
    handle = await session.attach("janus.plugin.videoroom")
    joined = await handle.message({"request": "join", "ptype": "publisher", "room": room, "display": display})
    feed_id = joined.data["id"]
    pc = RTCPeerConnection(ice_configuration([]))
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    answer = await handle.message(
        {"request": "publish", "audio": True, "video": True},
        {"type": "offer", "sdp": pc.localDescription.sdp},
        timeout,
    )
    if answer.jsep is None:
        await pc.close()
        raise JanusError(f"Janus accepted the publisher '{display}' but sent no SDP answer: {answer.data}")
    await pc.setRemoteDescription(RTCSessionDescription(answer.jsep["sdp"], answer.jsep["type"]))
    await _connected(pc, timeout)
    mids = {t.kind: t.mid for t in pc.getTransceivers() if t.mid is not None}
    return Publisher(session, handle, pc, room, feed_id, mids)


@dataclass(repr=False)
class Reception:
    """What a watcher received: audio at 48 kHz with arrival times, video frame count, data-channel messages."""

    def __repr__(self) -> str:  # a summary: the audio blocks would print for minutes
        return (f"Reception({len(self.audio)} audio blocks, {self.video_frames} video frames, "
                f"{len(self.messages)} messages, {self.dropped} dropped)")  # fmt: skip

    audio: list[np.ndarray] = field(default_factory=list)
    audio_arrival: list[float] = field(default_factory=list)  # wall time (time.time) each block arrived
    audio_pts: list[int] = field(default_factory=list)  # each block's media time (48 kHz RTP clock) from the sender
    video_frames: int = 0
    video_size: tuple[int, int] | None = None
    messages: list[tuple[float, dict]] = field(default_factory=list)
    dropped: int = 0

    def samples(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)

    def media_span(self) -> float:
        """Seconds of the sender's clock the received audio spans: what a player (which conceals a lost packet)
        plays, whether or not every packet of it arrived and was decoded."""
        if not self.audio_pts:
            return 0.0
        return ((self.audio_pts[-1] - self.audio_pts[0]) % 2**32 + self.audio[-1].size) / WEBRTC_RATE  # RTP wraps

    def captions(self, kind: str | None = None) -> list[dict]:
        return [m for _, m in self.messages if m.get("type") == "caption" and (kind is None or m.get("kind") == kind)]


class Watcher:
    """A WebRTC viewer of one Streaming mountpoint (a listener, or the event's own source ASR)."""

    def __init__(
        self,
        session: JanusSession,
        keep_audio: bool = True,
        video: bool = True,
        on_audio: Callable[[np.ndarray, float], None] | None = None,
        on_video: Callable[[av.VideoFrame], None] | None = None,
    ) -> None:
        self.session = session
        self.keep_audio = keep_audio
        self.video = video  # False: decline the video stream (an audio-only listener costs Janus less)
        self.on_audio = on_audio
        self.on_video = on_video
        self.reception = Reception()
        self.pc: RTCPeerConnection | None = None
        self.handle: JanusHandle | None = None
        self.mountpoint: int | None = None
        self._tasks: set[asyncio.Task] = set()
        self.connected_at: float | None = None
        self.first_audio_at: float | None = None

    async def watch(self, mountpoint: int, timeout: float = 15.0) -> float:
        """Start watching; returns the seconds from the request to a connected peer connection."""
        t0 = time.monotonic()
        self.mountpoint = mountpoint
        self.handle = await self.session.attach("janus.plugin.streaming")
        offer = await self.handle.message({"request": "watch", "id": mountpoint}, timeout=timeout)
        if offer.jsep is None:
            raise JanusError(f"Janus sent no offer for mountpoint {mountpoint}: {offer.data}")
        self.pc = pc = RTCPeerConnection(ice_configuration([]))

        @pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            task = asyncio.create_task(self._drain(track), name=f"watch-{track.kind}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        def _message(message: str | bytes) -> None:
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                text = message.decode() if isinstance(message, bytes) else message
                self.reception.messages.append((time.time(), json.loads(text)))

        @pc.on("datachannel")
        def _channel(channel: RTCDataChannel) -> None:
            channel.on("message", _message)

        await pc.setRemoteDescription(RTCSessionDescription(offer.jsep["sdp"], offer.jsep["type"]))
        if "m=application" in offer.jsep["sdp"]:
            # Janus relays a mountpoint's data only once the viewer has opened a channel (as janus.js does)
            pc.createDataChannel(DATA_LABEL).on("message", _message)
        if not self.video:
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "video":
                    transceiver.direction = "inactive"
        await pc.setLocalDescription(await pc.createAnswer())
        await self.handle.message({"request": "start"}, {"type": "answer", "sdp": pc.localDescription.sdp}, timeout)
        await _connected(pc, timeout)
        self.connected_at = time.monotonic()
        return self.connected_at - t0

    async def _drain(self, track: MediaStreamTrack) -> None:
        decoder = DecodedAudio(WEBRTC_RATE)

        def on_frame(frame: av.AudioFrame | av.VideoFrame) -> None:
            now = time.time()
            if isinstance(frame, av.AudioFrame):
                pts = frame.pts or 0  # the RTP timestamp, before the resampler forgets it
                samples = decoder.convert(frame)
                if self.first_audio_at is None and np.abs(samples).max(initial=0) > 0.01:
                    self.first_audio_at = now
                if self.keep_audio:
                    self.reception.audio.append(samples)
                    self.reception.audio_arrival.append(now)
                    self.reception.audio_pts.append(pts)
                if self.on_audio is not None:
                    self.on_audio(samples, now)
            else:
                self.reception.video_frames += 1
                self.reception.video_size = (frame.width, frame.height)
                if self.on_video is not None:
                    self.on_video(frame)

        def on_drop(n: int) -> None:
            self.reception.dropped += n

        await drain_track(track, on_frame, on_drop=on_drop)

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        if self.handle is not None:
            with contextlib.suppress(Exception):
                await self.handle.request({"request": "stop"}, timeout=2.0)
            await self.handle.detach()
        if self.pc is not None:
            await self.pc.close()
