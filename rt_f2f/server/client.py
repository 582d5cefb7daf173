"""A Python participant for the call server (aiortc): what the tests, the churn check and the benchmark join with.

It speaks the same protocol as the web client (docs/API.md): one offer with the participant's microphone and
camera, one receive-only audio + video pair per remote slot, and the ``rt-f2f`` data channel; then it records
what arrives per slot (audio with wall-clock arrival times, video frame sizes) and every data-channel message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel

from ..audio import StreamingResampler
from ..errors import RtF2fError
from .ingest import DecodedAudio, drain_track
from .peer import CHANNEL_LABEL, ice_configuration
from .tasks import cancel_and_wait, spawn
from .timebase import SAMPLES_PER_FRAME, VIDEO_CLOCK, VIDEO_TIME_BASE, WEBRTC_RATE
from .tracks import audio_frame


class ArrayAudioTrack(MediaStreamTrack):
    """Plays ``samples`` in real time (20 ms frames), then silence (or again, with ``loop``).

    ``started`` is the wall time (``time.monotonic``) of the first frame; ``play`` swaps in new audio at the next
    frame and ``switched`` tells when that frame was due: the mouth side of a mouth-to-ear measurement.
    """

    kind = "audio"

    def __init__(self, samples: np.ndarray, sample_rate: int, lead_in_s: float = 0.0, loop: bool = False) -> None:
        super().__init__()
        self.samples = self._prepare(samples, sample_rate, lead_in_s)
        self.loop = loop
        self.started: float | None = None
        self.switched: float | None = None
        self._pts = 0
        self._origin = 0  # pts at which ``samples`` began
        self._next: tuple[np.ndarray, bool] | None = None

    @staticmethod
    def _prepare(samples: np.ndarray, sample_rate: int, lead_in_s: float = 0.0) -> np.ndarray:
        audio = StreamingResampler(sample_rate, WEBRTC_RATE).process(np.asarray(samples, dtype=np.float32))
        return np.concatenate([np.zeros(int(lead_in_s * WEBRTC_RATE), np.float32), audio])

    def play(self, samples: np.ndarray, sample_rate: int, loop: bool = False) -> None:
        """Replace what is playing from the next frame on; ``switched`` becomes that frame's due time."""
        self.switched = None
        self._next = (self._prepare(samples, sample_rate), loop)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.started is None:
            self.started = time.monotonic()
        else:
            self._pts += SAMPLES_PER_FRAME
            wait = self.started + self._pts / WEBRTC_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        if self._next is not None:
            (self.samples, self.loop), self._next = self._next, None
            self._origin = self._pts
            self.switched = self.started + self._pts / WEBRTC_RATE
        offset = self._pts - self._origin
        if self.loop and self.samples.size:
            offset %= self.samples.size
        block = self.samples[offset : offset + SAMPLES_PER_FRAME]
        if block.size < SAMPLES_PER_FRAME:
            block = np.pad(block, (0, SAMPLES_PER_FRAME - block.size))
        return audio_frame(block, self._pts)


class PatternVideoTrack(MediaStreamTrack):
    """Synthetic camera: a moving gradient with a frame counter block, ``width`` x ``height`` at ``fps``."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: float = 15.0) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self._start: float | None = None
        self._index = 0
        ramp = np.linspace(0, 255, width, dtype=np.float32)
        self._base = np.broadcast_to(ramp, (height, width)).astype(np.uint8)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._index += 1
            wait = self._start + self._index / self.fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        rgb = np.stack([np.roll(self._base, self._index * 4, axis=1)] * 3, axis=-1)
        rgb[: self.height // 8, : self.width // 8] = (self._index * 16) % 256
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = int(self._index / self.fps * VIDEO_CLOCK)
        frame.time_base = VIDEO_TIME_BASE
        return frame


@dataclass
class SlotRecording:
    """What one remote slot delivered: audio blocks with their arrival times, and video frame sizes."""

    audio: list[tuple[float, np.ndarray]] = field(default_factory=list)
    video: list[tuple[float, int, int]] = field(default_factory=list)
    audio_samples: int = 0

    def audio_samples_array(self) -> np.ndarray:
        return np.concatenate([a for _, a in self.audio]) if self.audio else np.zeros(0, np.float32)

    def audio_times(self) -> np.ndarray:
        """Arrival wall time (time.monotonic) of every sample, interpolated within blocks."""
        if not self.audio:
            return np.zeros(0)
        return np.concatenate([t + np.arange(a.size) / WEBRTC_RATE for t, a in self.audio])


class RoomClient:
    """One participant: ``await join()``, then read ``slots`` / ``messages``; ``await close()`` when done."""

    def __init__(
        self,
        base_url: str,
        room_id: str,
        token: str,
        *,
        name: str = "py",
        speak: str = "en",
        hear: str = "en",
        slots: int = 1,
        audio: MediaStreamTrack | None = None,
        video: MediaStreamTrack | None = None,
        ice_servers: list[dict[str, Any]] | None = None,
        record_audio_s: float = 120.0,
        ping_s: float = 2.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.room_id, self.token = room_id, token
        self.name, self.speak, self.hear = name, speak, hear
        self.slot_count = slots
        self.audio, self.video = audio, video
        # max-bundle, with the data channel created after the transceivers: aiortc's other combinations leave a
        # second same-kind transceiver, or everything, on a transport the answer's BUNDLE group stops
        self.pc = RTCPeerConnection(ice_configuration(ice_servers or []))
        self.channel: RTCDataChannel | None = None
        self.slots = [SlotRecording() for _ in range(slots)]
        self.messages: list[dict[str, Any]] = []
        self.participant: dict[str, Any] | None = None
        self.secret: str | None = None
        self._max_samples = int(record_audio_s * WEBRTC_RATE)
        self._ping_s = ping_s
        self._tasks: set[asyncio.Task] = set()
        self._changed = asyncio.Event()

    @property
    def captions(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == "caption"]

    def roster(self) -> dict[str, Any] | None:
        rosters = [m for m in self.messages if m.get("type") == "roster"]
        return rosters[-1] if rosters else None

    def slot_of(self, participant_id: str) -> int | None:
        roster = self.roster()
        for p in roster["participants"] if roster else ():
            if p["id"] == participant_id:
                return p["slot"]
        return None

    async def join(self, timeout: float = 20.0) -> dict[str, Any]:
        self.pc.addTransceiver(self.audio or "audio", direction="sendonly" if self.audio else "inactive")
        self.pc.addTransceiver(self.video or "video", direction="sendonly" if self.video else "inactive")
        for _ in range(self.slot_count):
            self.pc.addTransceiver("audio", direction="recvonly")
            self.pc.addTransceiver("video", direction="recvonly")
        self.channel = self.pc.createDataChannel(CHANNEL_LABEL)
        self.channel.on("message", self._on_message)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {
            "token": self.token,
            "name": self.name,
            "speak": self.speak,
            "hear": self.hear,
            "type": "offer",
            "sdp": self.pc.localDescription.sdp,
        }
        url = f"{self.base_url}/api/rooms/{self.room_id}/join"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.post(url, json=body) as response:
                answer = await response.json()
                if response.status != 200:
                    raise RtF2fError(f"join refused ({response.status}): {answer.get('error')}", answer.get("hint", ""))
        self.participant, self.secret = answer["participant"], answer["secret"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        transceivers = self.pc.getTransceivers()
        for index in range(self.slot_count):
            for transceiver in transceivers[2 + 2 * index : 4 + 2 * index]:
                track = transceiver.receiver.track
                if track is not None:
                    spawn(drain_track(track, self._recorder(index, track.kind)), self._tasks, f"rec-{index}")
        spawn(self._ping(), self._tasks, "ping")
        await self.wait_for(lambda: self.pc.connectionState == "connected", timeout)
        return answer

    def _recorder(self, index: int, kind: str) -> Callable[[Any], None]:
        recording = self.slots[index]
        if kind == "video":
            return lambda frame: recording.video.append((time.monotonic(), frame.width, frame.height))
        decoder = DecodedAudio()

        def on_audio(frame: av.AudioFrame) -> None:
            samples = decoder.convert(frame)
            if recording.audio_samples + samples.size <= self._max_samples:
                recording.audio.append((time.monotonic(), samples))
                recording.audio_samples += samples.size

        return on_audio

    def _on_message(self, message: str | bytes) -> None:
        with contextlib.suppress(ValueError, TypeError):
            self.messages.append(json.loads(message))
            self._changed.set()

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(self._ping_s)
            self.send({"type": "ping", "t": time.time()})

    def send(self, message: dict[str, Any] | str) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(message if isinstance(message, str) else json.dumps(message))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, poll: float = 0.05) -> None:
        """Wait until ``predicate()`` holds; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=poll)

    async def leave(self) -> None:
        """Say goodbye on the data channel, then close."""
        self.send({"type": "leave"})
        await asyncio.sleep(0.05)
        await self.close()

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        for track in (self.audio, self.video):
            if track is not None:
                track.stop()
        await self.pc.close()


async def create_room(base_url: str) -> dict[str, Any]:
    """POST /api/rooms; returns the room's id, token and join link."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base_url.rstrip('/')}/api/rooms", json={}) as response:
            body = await response.json()
            if response.status != 201:
                raise RtF2fError(f"cannot create a room ({response.status}): {body.get('error')}")
            return body


__all__ = ["ArrayAudioTrack", "PatternVideoTrack", "RoomClient", "SlotRecording", "create_room"]
