"""One participant's WebRTC connection to the server (aiortc), laid out as fixed slots.

The browser's offer carries, in this order of kind: its microphone (first audio m-line), its camera (first video
m-line), then one receive-only audio + video pair per remote *slot*, and one data channel. Slots are allocated up
front (room size - 1), so people joining and leaving never need renegotiation: the server switches which speaker
feeds a slot and says so on the data channel. An empty slot sends nothing.

As the answerer, aiortc settles codecs inside ``setRemoteDescription`` and ignores preferences set after it, so
every transceiver (with its codec preferences and send track) is created before the offer is applied; they match
the offer's m-lines in order of kind.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.rtcdatachannel import RTCDataChannel
from aiortc.sdp import SessionDescription

from . import bounded_json
from .buffers import LatestFrames, PcmFifo
from .errors import ApiError
from .ingest import StaleFrames, drain_track
from .limits import Limits, MediaSettings, TokenBucket
from .tasks import cancel_and_wait, spawn
from .timebase import WEBRTC_RATE
from .tracks import SlotAudioTrack, SlotVideoTrack

log = logging.getLogger(__name__)

CHANNEL_LABEL = "rt-f2f"
MAX_CHANNEL_BUFFER = 256 * 1024  # captions to a client that stopped reading are dropped past this


@dataclass(frozen=True)
class OfferLayout:
    """Where the participant's own media and the remote slots sit in an offer."""

    slots: int
    has_microphone: bool
    has_camera: bool
    kinds: tuple[str, ...]  # kind of every audio/video m-line, in order


def parse_offer(sdp: str, limits: Limits) -> OfferLayout:
    """Check an offer's size and shape before any WebRTC state is created for it."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise ApiError(400, "the offer's sdp must be a non-empty string")
    if len(sdp.encode("utf-8", "replace")) > limits.max_sdp_bytes:
        raise ApiError(413, f"the offer's SDP is larger than {limits.max_sdp_bytes} bytes")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises whatever the malformed line provokes
        raise ApiError(400, f"the offer is not valid SDP ({type(exc).__name__})") from exc
    kinds = tuple(m.kind for m in description.media if m.kind in ("audio", "video"))
    audio = [m for m in description.media if m.kind == "audio"]
    video = [m for m in description.media if m.kind == "video"]
    if not audio or not video:
        raise ApiError(
            400,
            "the offer needs an audio and a video m-line for the participant's own microphone and camera",
            "add them with direction 'inactive' when a device is missing",
        )
    bundle = next((g for g in description.group if g.semantic == "BUNDLE"), None)
    mids = [m.rtp.muxId for m in description.media]
    if bundle is None or any(mid not in bundle.items for mid in mids):
        raise ApiError(400, "the offer must BUNDLE all its media sections (a=group:BUNDLE), as browsers do")
    for media in description.media:
        # aiortc accepts these missing and only fails later, inside a task nobody awaits
        if media.dtls is None or not media.dtls.fingerprints:
            raise ApiError(400, f"media section {media.rtp.muxId!r} has no DTLS fingerprint")
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise ApiError(400, f"media section {media.rtp.muxId!r} has no ICE credentials")
    if not any(m.kind == "application" for m in description.media):
        raise ApiError(400, f"the offer has no data channel; create one labelled '{CHANNEL_LABEL}' before the offer")
    slots = min(len(audio), len(video)) - 1
    if slots < 0 or slots > limits.max_participants - 1:
        raise ApiError(
            400, f"the offer asks for {slots} remote slots; this server allows 0..{limits.max_participants - 1}"
        )
    if len(kinds) > 2 * limits.max_participants:
        raise ApiError(400, "the offer has more media sections than the room can use")
    return OfferLayout(
        slots=slots,
        has_microphone=audio[0].direction in ("sendonly", "sendrecv"),
        has_camera=video[0].direction in ("sendonly", "sendrecv"),
        kinds=kinds,
    )


_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([A-Za-z0-9\-]+)/")
_FMTP = re.compile(r"^a=fmtp:(\d+) (.*)$")
_BITRATE_CODECS = {"vp8", "vp9", "h264", "av1"}


def add_bitrate_hints(sdp: str, start_kbps: int, min_kbps: int, max_kbps: int) -> str:
    """Put x-google-{start,min,max}-bitrate on every video codec's fmtp line of an answer.

    With aiortc on the other side Chrome's bandwidth estimate starts near 300 kbps and 640x480 drops resolution or
    frame rate for ~13 s; these hints (ignored by other browsers) bring it to full frame rate in ~3 s.
    """
    hint = f"x-google-start-bitrate={start_kbps};x-google-min-bitrate={min_kbps};x-google-max-bitrate={max_kbps}"
    lines = sdp.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    in_video = False
    video_pts: dict[str, int] = {}  # payload type -> index of its rtpmap line in out
    has_fmtp: set[str] = set()

    def close_section() -> None:
        # codecs without an fmtp line (VP8) get one, right after their rtpmap
        for pt, index in sorted(video_pts.items(), key=lambda kv: -kv[1]):
            if pt not in has_fmtp:
                out.insert(index + 1, f"a=fmtp:{pt} {hint}")
        video_pts.clear()
        has_fmtp.clear()

    for line in lines:
        if line.startswith("m="):
            if in_video:
                close_section()
            in_video = line.startswith("m=video")
        elif in_video:
            rtpmap = _RTPMAP.match(line)
            if rtpmap and rtpmap.group(2).lower() in _BITRATE_CODECS:
                video_pts[rtpmap.group(1)] = len(out)
            fmtp = _FMTP.match(line)
            if fmtp and fmtp.group(1) in video_pts:
                has_fmtp.add(fmtp.group(1))
                line = f"{line};{hint}"
        out.append(line)
    if in_video:
        # the trailing empty string after the last CRLF must stay last
        tail = out.pop() if out and out[-1] == "" else None
        close_section()
        if tail is not None:
            out.append(tail)
    return "\r\n".join(out)


def ice_configuration(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    """ICE servers as given (aiortc falls back to a public STUN server when given none), everything bundled.

    max-bundle matters: with aiortc's default ("balanced") a second transceiver of a kind created before
    ``setRemoteDescription`` keeps its own transport, which the offer's BUNDLE group then stops: that slot would
    never send. With max-bundle every transceiver shares the first one's transport from the start.
    """
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in ice_servers
        ],
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
    )


@dataclass
class SlotOutput:
    """One remote slot on this participant's connection: what it plays, and the tracks that send it."""

    index: int
    fifo: PcmFifo
    frames: LatestFrames[av.VideoFrame]
    audio: SlotAudioTrack
    video: SlotVideoTrack
    speaker: str | None = None


@dataclass
class PeerCallbacks:
    on_audio: Callable[[av.AudioFrame], None]
    on_video: Callable[[av.VideoFrame], None]
    on_message: Callable[[dict[str, Any]], None]
    on_channel_open: Callable[[], None]
    on_gone: Callable[[str], None]
    # asked when the camera's picture size changes: may the server decode this many more pixels? (server budget)
    admit_video: Callable[[int], bool] = lambda pixels: True


@dataclass
class PeerCounters:
    decoded_dropped: int = 0
    oversize_frames: int = 0  # camera frames above the per-participant or the server's pixel budget
    bad_messages: int = 0
    messages_dropped: int = 0
    connected_at: float | None = None


class Peer:
    """The server's side of one participant's connection."""

    def __init__(
        self,
        name: str,
        limits: Limits,
        settings: MediaSettings,
        ice_servers: list[dict[str, Any]],
        callbacks: PeerCallbacks,
    ) -> None:
        self.name = name
        self.limits = limits
        self.settings = settings
        self.callbacks = callbacks
        self.pc = RTCPeerConnection(ice_configuration(ice_servers))
        self.slots: list[SlotOutput] = []
        self.channel: RTCDataChannel | None = None
        self.counters = PeerCounters()
        self.created = time.monotonic()
        self.last_activity = self.created
        self._bucket = TokenBucket(limits.max_messages_per_second, 2 * limits.max_messages_per_second)
        self._tasks: set[asyncio.Task] = set()
        self._closed = False
        self._json_bounds = bounded_json.JsonBounds(limits.max_message_bytes, limits.max_json_depth)
        self.video_pixels = 0  # the camera's current picture size, once admitted
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    @property
    def connected(self) -> bool:
        return self.pc.connectionState == "connected"

    # -- negotiation ---------------------------------------------------------------------------------------------

    async def answer(self, offer_sdp: str, layout: OfferLayout) -> str:
        """Apply the offer and return the answer SDP (ICE candidates included: no trickle)."""
        own_seen = {"audio": False, "video": False}
        slot_seen = {"audio": 0, "video": 0}
        receivers: list[RTCRtpTransceiver] = []
        for kind in layout.kinds:
            if not own_seen[kind]:
                own_seen[kind] = True
                receivers.append(self._add_transceiver(kind, "recvonly"))
                continue
            index = slot_seen[kind]
            slot_seen[kind] += 1
            if index < layout.slots:
                slot = self._slot(index)
                track = slot.audio if kind == "audio" else slot.video
                self._add_transceiver(track, "sendonly")
            else:
                self._add_transceiver(kind, "inactive")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:  # aiortc validates the description here; any complaint means a bad offer
            raise ApiError(400, f"the offer was refused: {exc or type(exc).__name__}") from exc
        for transceiver in receivers:
            track = transceiver.receiver.track
            if track is None:  # the offer does not send this device
                continue
            video = track.kind == "video"
            handler = self._on_video_frame if video else self._on_audio_frame
            stale = StaleFrames(self.settings.max_video_lag_s) if video else None
            spawn(
                drain_track(track, handler, self.settings.max_decoded_backlog, self._on_decoded_dropped, stale),
                self._tasks,
                f"drain-{track.kind}-{self.name}",
            )
        s = self.settings
        return add_bitrate_hints(
            self.pc.localDescription.sdp, s.start_bitrate_kbps, s.min_bitrate_kbps, s.max_bitrate_kbps
        )

    def _add_transceiver(self, track_or_kind: Any, direction: str) -> RTCRtpTransceiver:
        transceiver = self.pc.addTransceiver(track_or_kind, direction=direction)
        kind = transceiver.kind
        codec = self.settings.video_codec
        if kind == "video" and codec:
            wanted = {f"video/{codec}".lower(), "video/rtx"}
            caps = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() in wanted]
            transceiver.setCodecPreferences(caps)
        return transceiver

    def _slot(self, index: int) -> SlotOutput:
        while len(self.slots) <= index:
            fifo = PcmFifo(int(self.settings.max_passthrough_audio_s * WEBRTC_RATE))
            frames: LatestFrames[av.VideoFrame] = LatestFrames(maxlen=2)
            self.slots.append(SlotOutput(len(self.slots), fifo, frames, SlotAudioTrack(fifo), SlotVideoTrack(frames)))
        return self.slots[index]

    # -- media and messages in -----------------------------------------------------------------------------------

    def _on_audio_frame(self, frame: av.AudioFrame) -> None:
        self.last_activity = time.monotonic()
        self.callbacks.on_audio(frame)

    def _on_video_frame(self, frame: av.VideoFrame) -> None:
        self.last_activity = time.monotonic()
        pixels = frame.width * frame.height
        if pixels != self.video_pixels and not self._admit_video(frame):
            return
        self.callbacks.on_video(frame)

    def _admit_video(self, frame: av.VideoFrame) -> bool:
        """A new picture size: refuse it above the per-participant cap or the server's budget, and drop this
        participant (a hostile sender would otherwise keep the server decoding its 4K frames)."""
        pixels = frame.width * frame.height
        cap = self.limits.max_video_pixels
        if pixels <= cap and self.callbacks.admit_video(pixels):
            self.video_pixels = pixels
            return True
        self.counters.oversize_frames += 1
        if self.counters.oversize_frames == 1:
            why = f"above this server's cap of {cap} pixels" if pixels > cap else "beyond the server's video budget"
            log.info("%s: camera sends %dx%d, %s: disconnecting", self.name, frame.width, frame.height, why)
            self.send(
                {
                    "type": "error",
                    "message": f"your camera sends {frame.width}x{frame.height}, {why}",
                    "hint": "send a smaller picture (640x480 works everywhere) and join again",
                }
            )
            self.callbacks.on_gone("video too large")
        return False

    def _on_decoded_dropped(self, count: int) -> None:
        self.counters.decoded_dropped += count

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != CHANNEL_LABEL or self.channel is not None:
            channel.close()
            return
        self.channel = channel
        channel.on("message", self._on_message)
        channel.on("close", lambda: self.callbacks.on_gone("data channel closed"))
        self.callbacks.on_channel_open()

    def _on_message(self, message: str | bytes) -> None:
        self.last_activity = time.monotonic()
        if not self._bucket.allow():
            self.counters.messages_dropped += 1
            return
        size = len(message.encode("utf-8", "replace")) if isinstance(message, str) else len(message)
        if size > self.limits.max_message_bytes:
            self._bad_message(f"message larger than {self.limits.max_message_bytes} bytes")
            return
        if not isinstance(message, str):
            self._bad_message("messages must be JSON text")
            return
        try:
            data = bounded_json.loads(message, self._json_bounds)
        except bounded_json.JsonRefused as exc:
            self._bad_message(f"message is not acceptable JSON: {exc.reason}")
            return
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            self._bad_message("message must be a JSON object with a string 'type'")
            return
        self.callbacks.on_message(data)

    def _bad_message(self, reason: str) -> None:
        self.counters.bad_messages += 1
        self.send({"type": "error", "message": reason})
        if self.counters.bad_messages > self.limits.max_bad_messages:
            self.callbacks.on_gone("too many malformed messages")

    def bad_request(self, reason: str) -> None:
        """A well-formed message the server does not accept (unknown type, bad field)."""
        self._bad_message(reason)

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self.counters.connected_at is None:
            self.counters.connected_at = time.monotonic()
        elif state in ("failed", "closed"):
            self.callbacks.on_gone(f"connection {state}")

    # -- out -----------------------------------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> bool:
        """Send JSON on the data channel if it is open and the client keeps up; False when it was not sent."""
        channel = self.channel
        if channel is None or channel.readyState != "open" or channel.bufferedAmount > MAX_CHANNEL_BUFFER:
            return False
        try:
            channel.send(json.dumps(message, separators=(",", ":")))
        except Exception:  # the transport closed under us; the connection-state handler cleans up
            return False
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for slot in self.slots:
            slot.audio.stop()
            slot.video.stop()
            slot.fifo.clear()
            slot.frames.clear()
        await cancel_and_wait(self._tasks)
        try:
            await asyncio.wait_for(self.pc.close(), timeout=5.0)
        except (TimeoutError, Exception):  # closing a half-open connection may fail; it is gone either way
            log.debug("closing %s's connection did not finish cleanly", self.name, exc_info=True)
        self.channel = None
        self.video_pixels = 0


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6") if ctypes.util.find_library("c") else None


def return_freed_memory() -> None:
    """Hand freed heap back to the system (glibc keeps it otherwise): a participant's decoder frames are many
    megabytes, allocated in worker threads' arenas that glibc does not shrink on its own."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
