"""An event's layout inside Janus: one VideoRoom for publishers, one Streaming mountpoint per channel.

A *channel* is what a listener picks: the original, or one target language. Each channel is a mountpoint fed by
plain RTP on its own UDP ports; the controller decides which VideoRoom feed is forwarded into it (the language's
translator when it is healthy, the original otherwise), so a failover changes one forwarder and no listener has
to renegotiate. Captions and status notes reach a channel's listeners as datagrams on its data port, which Janus
relays over each listener's data channel.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass, field

from .janus_client import JanusHandle, JanusSession
from .janus_process import JanusError, free_port

log = logging.getLogger(__name__)

AUDIO_PT = 111
VIDEO_PT = 100
ORIGINAL = "original"
MAX_DATAGRAM = 1200  # a caption must fit one UDP datagram well under the MTU


@dataclass
class Channel:
    """One mountpoint and the forwarder that feeds it (``source``: the feed's name, ``None`` when unfed)."""

    name: str
    mountpoint: int
    audio_port: int
    video_port: int
    data_port: int
    source: str | None = None
    feed_id: int | None = None
    forwarders: list[int] = field(default_factory=list)


class EventSfu:
    """Creates and re-creates (after a Janus restart) the room and mountpoints, and switches forwarders."""

    def __init__(self, url: str, room: int, rtp_host: str = "127.0.0.1") -> None:
        self.url = url
        self.room = room
        self.rtp_host = rtp_host  # where Janus's mountpoints listen, as seen from Janus and the translators
        self.channels: dict[str, Channel] = {}
        self.session: JanusSession | None = None
        self._room_handle: JanusHandle | None = None
        self._stream_handle: JanusHandle | None = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.datagrams_dropped = 0

    async def open(self) -> None:
        """(Re)connect and create the room and every known channel's mountpoint (idempotent after a restart)."""
        if self.session is not None:
            await self.session.close()
        self.session = await JanusSession.create(self.url)
        self._room_handle = await self.session.attach("janus.plugin.videoroom")
        self._stream_handle = await self.session.attach("janus.plugin.streaming")
        exists = await self._room_handle.request({"request": "exists", "room": self.room})
        if not exists.get("exists"):
            await self._room_handle.request({
                "request": "create", "room": self.room, "description": f"rt-f2f event {self.room}",
                "publishers": 64, "audiocodec": "opus", "videocodec": "vp8", "fir_freq": 2, "permanent": False,
            })  # fmt: skip
        for channel in self.channels.values():
            channel.source, channel.feed_id, channel.forwarders = None, None, []
            await self._create_mountpoint(channel)

    async def add_channel(self, name: str) -> Channel:
        if name in self.channels:
            return self.channels[name]
        mountpoint = self.room * 100 + len(self.channels) + 1
        ports = [free_port(socket.SOCK_DGRAM) for _ in range(3)]
        channel = Channel(name, mountpoint, *ports)
        await self._create_mountpoint(channel)
        self.channels[name] = channel
        return channel

    async def remove_channel(self, name: str) -> None:
        channel = self.channels.pop(name, None)
        if channel is None:
            return
        await self.unforward(channel)
        await self._stream_handle.request({"request": "destroy", "id": channel.mountpoint})

    async def _create_mountpoint(self, channel: Channel) -> None:
        existing = await self._stream_handle.request({"request": "list"})
        if any(m.get("id") == channel.mountpoint for m in existing.get("list", [])):
            await self._stream_handle.request({"request": "destroy", "id": channel.mountpoint})
        await self._stream_handle.request({
            "request": "create", "type": "rtp", "id": channel.mountpoint, "name": f"rt-f2f {channel.name}",
            "description": channel.name, "permanent": False,
            "media": [
                {"type": "audio", "mid": "a", "port": channel.audio_port, "pt": AUDIO_PT, "codec": "opus"},
                {"type": "video", "mid": "v", "port": channel.video_port, "pt": VIDEO_PT, "codec": "vp8"},
                {"type": "data", "mid": "d", "port": channel.data_port, "datatype": "text"},
            ],
        })  # fmt: skip

    async def forward(self, channel: Channel, source: str, feed_id: int) -> None:
        """Make ``feed_id`` (named ``source``) the one feeding ``channel``, replacing whatever fed it.

        The publisher's first audio and first video stream are forwarded (Janus's port-per-kind form), re-stamped
        with the mountpoint's payload types.
        """
        if channel.feed_id == feed_id and channel.forwarders:
            return
        await self.unforward(channel)
        reply = await self._room_handle.request({
            "request": "rtp_forward", "room": self.room, "publisher_id": feed_id, "host": self.rtp_host,
            "audio_port": channel.audio_port, "audio_pt": AUDIO_PT, "video_port": channel.video_port,
            "video_pt": VIDEO_PT,
        })  # fmt: skip
        legacy = reply.get("rtp_stream", {})  # this request form answers with per-kind stream ids
        channel.forwarders = [f["stream_id"] for f in reply.get("forwarders", [])] + [
            legacy[k] for k in ("audio_stream_id", "video_stream_id", "data_stream_id") if k in legacy
        ]
        if not channel.forwarders:
            raise JanusError(f"Janus set up no forwarder for {source} into {channel.name}: {reply}")
        channel.source, channel.feed_id = source, feed_id
        log.info("channel %s now carries %s (feed %s)", channel.name, source, feed_id)

    async def unforward(self, channel: Channel) -> None:
        for stream_id in channel.forwarders:
            try:
                await self._room_handle.request({
                    "request": "stop_rtp_forward", "room": self.room, "publisher_id": channel.feed_id,
                    "stream_id": stream_id,
                })  # fmt: skip
            except JanusError as exc:  # the feed already left: its forwarders went with it
                log.debug("stop_rtp_forward on %s: %s", channel.name, exc)
        channel.forwarders, channel.source, channel.feed_id = [], None, None

    def send_data(self, channel: Channel, message: dict) -> bool:
        """One JSON message to the channel's listeners (via Janus's data channel); False when it was dropped."""
        payload = json.dumps(message, ensure_ascii=False).encode()
        if len(payload) > MAX_DATAGRAM:
            self.datagrams_dropped += 1
            return False
        try:
            self._sock.sendto(payload, (self.rtp_host, channel.data_port))
        except OSError:
            self.datagrams_dropped += 1
            return False
        return True

    async def close(self) -> None:
        if self.session is not None:
            for channel in list(self.channels.values()):
                try:
                    await self.unforward(channel)
                    await self._stream_handle.request({"request": "destroy", "id": channel.mountpoint})
                except Exception as exc:  # Janus may already be gone; nothing left to free then
                    log.debug("closing channel %s: %s", channel.name, exc)
            try:
                await self._room_handle.request({"request": "destroy", "room": self.room})
            except Exception as exc:
                log.debug("destroying room: %s", exc)
            await self.session.close()
            self.session = None
        self._sock.close()


def send_datagram(host: str, port: int, message: dict) -> bool:
    """A caption from a process that has no ``EventSfu`` (a translator worker on any node)."""
    payload = json.dumps(message, ensure_ascii=False).encode()
    if len(payload) > MAX_DATAGRAM:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(payload, (host, port))
        except OSError:
            return False
    return True
