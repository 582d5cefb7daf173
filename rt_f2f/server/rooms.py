"""Rooms, the people in them, and who hears whom through which feed.

A room routes media: for every speaker and every language someone else in the room hears, there is exactly one
``ListenerFeed`` (so one speech engine per speaker and target language), and each listener's slots subscribe to
the feeds of the people they hear. Joining and leaving recompute that routing under the room's lock; feeds that
nobody needs any more are closed, which stops their engines and tasks.

Who may create and join rooms, and when a participant is released, is ``registry.Registry``'s business.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import av

from ..frames import AudioChunk, Caption
from .errors import ApiError
from .feeds.base import FeedFactory, ListenerFeed
from .ingest import DecodedAudio
from .limits import Limits, MediaSettings
from .peer import Peer, SlotOutput
from .timebase import WEBRTC_RATE

log = logging.getLogger(__name__)


def secret_matches(given: Any, expected: str) -> bool:
    """Constant-time comparison of a client's token or secret (ours are ASCII: anything else cannot match)."""
    if not isinstance(given, str) or not given.isascii():
        return False
    return hmac.compare_digest(given.encode("ascii"), expected.encode("ascii"))


@dataclass(eq=False)
class Participant:
    id: str
    secret: str
    name: str
    speak: str
    hear: str
    room: Room
    peer: Peer | None = None
    joined: float = field(default_factory=time.monotonic)
    gone: bool = False
    samples_in: int = 0
    audio_in: DecodedAudio = field(default_factory=DecodedAudio)

    def public(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "speak": self.speak, "hear": self.hear}


class Room:
    """A call: up to ``limits.max_participants`` people, each hearing the others in their own language."""

    def __init__(
        self,
        room_id: str,
        token: str,
        limits: Limits,
        settings: MediaSettings,
        feed_factory: FeedFactory,
        owner: str = "",
    ) -> None:
        self.id = room_id
        self.owner = owner  # the address that created it, for the per-client room quota
        self.token = token
        self.limits = limits
        self.settings = settings
        self.feed_factory = feed_factory
        self.participants: dict[str, Participant] = {}
        self.feeds: dict[tuple[str, str], ListenerFeed] = {}
        self._by_speaker: dict[str, list[ListenerFeed]] = {}
        self.reserved = 0  # seats held by joins still negotiating
        self.created = time.monotonic()
        self.emptied = self.created
        self._lock = asyncio.Lock()

    def token_matches(self, token: Any) -> bool:
        return secret_matches(token, self.token)

    @property
    def occupancy(self) -> int:
        return len(self.participants) + self.reserved

    def reserve(self) -> None:
        if self.occupancy >= self.limits.max_participants:
            raise ApiError(409, f"the room is full ({self.limits.max_participants} participants)")
        self.reserved += 1

    def release(self) -> None:
        self.reserved = max(0, self.reserved - 1)

    # -- membership ----------------------------------------------------------------------------------------------

    async def add(self, participant: Participant) -> None:
        async with self._lock:
            self.participants[participant.id] = participant
            to_close = await self._route()
        await self._close_feeds(to_close)
        self.broadcast_roster()

    async def remove(self, participant: Participant) -> None:
        async with self._lock:
            if self.participants.pop(participant.id, None) is None:
                return
            if participant.peer is not None:
                for slot in participant.peer.slots:
                    self._detach(slot, participant.hear)
            to_close = await self._route()
            if not self.participants:
                self.emptied = time.monotonic()
        await self._close_feeds(to_close)
        self.broadcast_roster()

    async def _route(self) -> list[ListenerFeed]:
        """Make feeds and slot subscriptions match who is in the room; returns the feeds to close."""
        people = list(self.participants.values())
        needed = {(s.id, listener.hear) for s in people for listener in people if listener is not s}
        to_close = [self.feeds.pop(key) for key in list(self.feeds) if key not in needed]
        for feed in to_close:  # cut them off now: a freed slot may be handed to someone else below
            feed.audio.clear()
            feed.video.clear()
        for listener in people:
            for slot in listener.peer.slots if listener.peer else ():
                if slot.speaker is not None and (slot.speaker, listener.hear) not in self.feeds:
                    self._detach(slot, listener.hear)
        for speaker_id, language in sorted(needed - self.feeds.keys()):
            speaker = self.participants[speaker_id]
            feed = self.feed_factory(speaker_id, speaker.speak, language, self.settings, self)
            self.feeds[(speaker_id, language)] = feed
            await feed.start()
        self._by_speaker = {}
        for (speaker_id, _), feed in sorted(self.feeds.items()):
            self._by_speaker.setdefault(speaker_id, []).append(feed)
        for listener in people:
            if listener.peer is None:
                continue
            placed = {slot.speaker for slot in listener.peer.slots}
            free = [slot for slot in listener.peer.slots if slot.speaker is None]
            for speaker in people:
                if speaker is listener or speaker.id in placed or not free:
                    continue
                self._attach(free.pop(0), speaker, listener.hear)
        return to_close

    def _attach(self, slot: SlotOutput, speaker: Participant, language: str) -> None:
        feed = self.feeds[(speaker.id, language)]
        s = self.settings
        translated = feed.mode != "passthrough"
        slot.fifo.clear()
        slot.fifo.max_samples = int(
            (s.max_translated_audio_s if translated else s.max_passthrough_audio_s) * WEBRTC_RATE
        )
        slot.fifo.prebuffer = int(s.jitter_prebuffer_s * WEBRTC_RATE)
        slot.fifo.target = None if translated else 2 * slot.fifo.prebuffer
        slot.frames.clear()
        feed.audio.subscribe(_AudioSink(slot))
        feed.video.subscribe(slot.frames)
        slot.speaker = speaker.id

    def _detach(self, slot: SlotOutput, language: str) -> None:
        if slot.speaker is None:
            return
        feed = self.feeds.get((slot.speaker, language))
        if feed is not None:
            feed.audio.unsubscribe(_AudioSink(slot))
            feed.video.unsubscribe(slot.frames)
        slot.speaker = None
        slot.fifo.clear()
        slot.frames.clear()

    async def _close_feeds(self, feeds: list[ListenerFeed]) -> None:
        if feeds:
            await asyncio.gather(*(feed.close() for feed in feeds), return_exceptions=True)

    # -- media in ------------------------------------------------------------------------------------------------

    def on_audio(self, speaker: Participant, frame: av.AudioFrame) -> None:
        feeds = self._by_speaker.get(speaker.id, ())
        if not feeds:  # nobody listens: keep the speaker's clock running, skip the work
            speaker.samples_in += int(frame.samples * WEBRTC_RATE / (frame.sample_rate or WEBRTC_RATE))
            return
        samples = speaker.audio_in.convert(frame)
        if samples.size == 0:
            return
        chunk = AudioChunk(samples, WEBRTC_RATE, speaker.samples_in / WEBRTC_RATE, source=speaker.id)
        speaker.samples_in += samples.size
        now = time.monotonic()
        for feed in feeds:
            feed.push_audio(chunk, now)

    def on_video(self, speaker: Participant, frame: av.VideoFrame) -> None:
        now = time.monotonic()
        for feed in self._by_speaker.get(speaker.id, ()):
            feed.push_video(frame, now)

    # -- FeedEvents: captions and status go to the feed's listeners ------------------------------------------------

    def caption(self, feed: ListenerFeed, caption: Caption) -> None:
        message = {
            "type": "caption",
            "speaker": feed.speaker,
            "text": caption.text[:2000],
            "language": caption.language,
            "kind": caption.kind,
            "final": caption.final,
            "start": round(caption.start, 3),
            "end": round(caption.end, 3),
        }
        recipients = self._listeners_of(feed)
        if caption.kind == "source" and self._is_primary(feed):
            # one translated feed per speaker also tells same-language listeners and the speaker what was heard
            speaker = self.participants.get(feed.speaker)
            if speaker is not None:
                recipients += [p for p in self.participants.values() if p.hear == speaker.speak or p is speaker]
        for participant in dict.fromkeys(recipients):
            if participant.peer is not None:
                participant.peer.send(message)

    def status(self, feed: ListenerFeed, state: str, detail: str = "") -> None:
        message = {"type": "status", "speaker": feed.speaker, "language": feed.target, "state": state}
        if detail:
            message["detail"] = detail[:500]
        for participant in self._listeners_of(feed):
            if participant.peer is not None:
                participant.peer.send(message)

    def _listeners_of(self, feed: ListenerFeed) -> list[Participant]:
        return [p for p in self.participants.values() if p.id != feed.speaker and p.hear == feed.target]

    def _is_primary(self, feed: ListenerFeed) -> bool:
        translated = [f for f in self._by_speaker.get(feed.speaker, ()) if f.mode != "passthrough"]
        return bool(translated) and translated[0] is feed

    # -- messages out ------------------------------------------------------------------------------------------

    def roster_for(self, listener: Participant) -> dict[str, Any]:
        slots = {slot.speaker: slot.index for slot in listener.peer.slots} if listener.peer else {}
        others = []
        for p in self.participants.values():
            if p is listener:
                continue
            feed = self.feeds.get((p.id, listener.hear))
            others.append({**p.public(), "slot": slots.get(p.id), "mode": feed.mode if feed else None})
        return {"type": "roster", "room": self.id, "you": listener.public(), "participants": others}

    def broadcast_roster(self) -> None:
        for participant in self.participants.values():
            if participant.peer is not None:
                participant.peer.send(self.roster_for(participant))

    def send_stats(self) -> None:
        for listener in self.participants.values():
            if listener.peer is None or not listener.peer.connected:
                continue
            speakers: dict[str, Any] = {}
            for slot in listener.peer.slots:
                feed = self.feeds.get((slot.speaker, listener.hear)) if slot.speaker else None
                if feed is None:
                    continue
                stats = feed.stats()
                buffered = len(slot.fifo) / WEBRTC_RATE
                stats["buffered_audio_s"] = round(buffered, 3)
                stats["dropped_audio_s"] = round(slot.fifo.dropped / WEBRTC_RATE, 3)
                stats["server_delay_s"] = round(float(stats.get("delay_s") or 0.0) + buffered, 3)
                speaker = self.participants.get(slot.speaker)
                if speaker is not None and speaker.peer is not None:  # late or backed-up frames from the speaker
                    stats["input_frames_dropped"] = speaker.peer.counters.decoded_dropped
                speakers[slot.speaker] = stats
            listener.peer.send({"type": "stats", "speakers": speakers})


@dataclass(frozen=True, eq=False)
class _AudioSink:
    """Adapts a slot's ``PcmFifo`` to the audio relay's ``AudioChunk`` items (equal per slot, for unsubscribe)."""

    slot: SlotOutput

    def put(self, chunk: AudioChunk) -> None:
        self.slot.fifo.put(chunk.samples)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _AudioSink) and other.slot is self.slot

    def __hash__(self) -> int:
        return id(self.slot)
