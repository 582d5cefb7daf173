"""Rooms, the people in them, and who hears whom through which feed.

A room routes media: for every speaker and every language someone else in the room hears, there is exactly one
``ListenerFeed`` (so one speech engine per speaker and target language), and each listener's slots subscribe to
the feeds of the people they hear. Joining and leaving recompute that routing under the room's lock; feeds that
nobody needs any more are closed, which stops their engines and tasks.

Everything a participant owns (connection, drain tasks, slots, feeds they speak into) is released by
``Registry.remove`` — called on leave, on a failed or closed connection, and by ``sweep`` when a participant has
gone silent or never connected — so a vanished browser costs nothing after a few seconds.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import av

from ..frames import AudioChunk, Caption
from .errors import ApiError
from .feeds.base import FeedFactory, ListenerFeed
from .ingest import DecodedAudio
from .limits import Limits, MediaSettings
from .peer import OfferLayout, Peer, PeerCallbacks, SlotOutput, parse_offer, return_freed_memory
from .tasks import spawn
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


class Registry:
    """All rooms on this server, and the lifecycle of everyone in them."""

    def __init__(
        self,
        limits: Limits,
        settings: MediaSettings,
        feed_factory: FeedFactory,
        ice_servers: list[dict[str, Any]] | None = None,
    ) -> None:
        self.limits = limits
        self.settings = settings
        self.feed_factory = feed_factory
        self.ice_servers = list(ice_servers or [])
        self.rooms: dict[str, Room] = {}
        self.pending_joins = 0
        self._tasks: set[asyncio.Task] = set()
        self._freed = False  # someone left since the heap was last trimmed

    @property
    def participant_count(self) -> int:
        return sum(len(r.participants) for r in self.rooms.values())

    def create_room(self, owner: str = "") -> Room:
        limits = self.limits
        if sum(1 for r in self.rooms.values() if r.owner == owner) >= limits.max_rooms_per_client:
            raise ApiError(
                429,
                f"your address already holds {limits.max_rooms_per_client} rooms",
                f"reuse one of them; an empty room expires {limits.empty_room_ttl_s:g} s after it emptied",
                retry_after=int(limits.empty_room_ttl_s),
            )
        if len(self.rooms) >= limits.max_rooms:
            raise ApiError(503, f"this server already holds {limits.max_rooms} rooms", "try again later")
        room_id = secrets.token_urlsafe(9)
        room = Room(room_id, secrets.token_urlsafe(24), limits, self.settings, self.feed_factory, owner)
        self.rooms[room_id] = room
        return room

    def room(self, room_id: str, token: Any) -> Room:
        """The room, if the token opens it; the same 404 otherwise, so a wrong token reveals nothing."""
        room = self.rooms.get(room_id) if isinstance(room_id, str) else None
        if room is None or not room.token_matches(token):
            raise ApiError(404, "no such room, or the token is wrong", "ask for a fresh join link")
        return room

    async def join(self, room: Room, name: str, speak: str, hear: str, sdp: str) -> tuple[Participant, str, int]:
        """Answer a participant's offer; returns (participant, answer SDP, number of remote slots)."""
        layout: OfferLayout = parse_offer(sdp, self.limits)
        if self.pending_joins >= self.limits.max_pending_joins:
            raise ApiError(503, "too many people are joining right now", "try again in a few seconds", retry_after=3)
        room.reserve()
        self.pending_joins += 1
        participant = Participant(secrets.token_urlsafe(6), secrets.token_urlsafe(16), name, speak, hear, room)
        peer = Peer(
            participant.id,
            self.limits,
            self.settings,
            self.ice_servers,
            PeerCallbacks(
                on_audio=lambda frame: room.on_audio(participant, frame),
                on_video=lambda frame: room.on_video(participant, frame),
                on_message=lambda message: self._on_message(participant, message),
                on_channel_open=lambda: self._on_channel_open(participant),
                on_gone=lambda reason: self.schedule_remove(participant, reason),
                admit_video=lambda pixels: self._admit_video(participant, pixels),
            ),
        )
        participant.peer = peer
        try:
            answer = await peer.answer(sdp, layout)
            await room.add(participant)
        except BaseException:
            participant.gone = True
            await room.remove(participant)
            await peer.close()
            raise
        finally:
            room.release()
            self.pending_joins -= 1
        log.info("room %s: %s joined (%s -> %s, %d slots)", room.id, participant.id, speak, hear, layout.slots)
        return participant, answer, layout.slots

    def _admit_video(self, participant: Participant, pixels: int) -> bool:
        """The server's decoded-video budget: everyone's current picture sizes together, this one's new size."""
        others = sum(
            p.peer.video_pixels
            for room in self.rooms.values()
            for p in room.participants.values()
            if p is not participant and p.peer is not None
        )
        return others + pixels <= self.limits.max_total_video_pixels

    def _on_channel_open(self, participant: Participant) -> None:
        if participant.peer is not None:
            participant.peer.send(participant.room.roster_for(participant))

    def _on_message(self, participant: Participant, message: dict[str, Any]) -> None:
        kind = message["type"]
        peer = participant.peer
        if peer is None:
            return
        if kind == "ping":
            t = message.get("t")
            peer.send({"type": "pong", "t": t if isinstance(t, int | float) else None, "server_time": time.time()})
        elif kind == "leave":
            self.schedule_remove(participant, "left")
        else:
            peer.bad_request(f"unknown message type {kind[:40]!r}")

    def schedule_remove(self, participant: Participant, reason: str) -> None:
        """Remove from an event handler (which cannot await); repeated calls are harmless."""
        if participant.gone:
            return
        spawn(self.remove(participant, reason), self._tasks, f"remove-{participant.id}")

    async def remove(self, participant: Participant, reason: str) -> None:
        if participant.gone:
            return
        participant.gone = True
        log.info("room %s: %s left (%s)", participant.room.id, participant.id, reason)
        await participant.room.remove(participant)
        if participant.peer is not None:
            await participant.peer.close()
        self._freed = True

    def _return_memory(self) -> None:
        if self._freed:
            self._freed = False
            return_freed_memory()

    def leave(self, room: Room, participant_id: Any, secret: Any) -> bool:
        participant = room.participants.get(participant_id) if isinstance(participant_id, str) else None
        if participant is None or not secret_matches(secret, participant.secret):
            return False
        self.schedule_remove(participant, "left")
        return True

    async def sweep(self, now: float | None = None) -> None:
        """Drop participants that never connected or went silent, and rooms that are empty or too old."""
        now = time.monotonic() if now is None else now
        self._return_memory()  # once per sweep, after departures: cheap, and not on the join/leave path
        for room in list(self.rooms.values()):
            for participant in list(room.participants.values()):
                peer = participant.peer
                if peer is None:
                    continue
                connected_at = peer.counters.connected_at
                if connected_at is None:
                    if now - peer.created > self.limits.connect_timeout_s:
                        self.schedule_remove(participant, "never connected")
                elif now - max(peer.last_activity, connected_at) > self.limits.idle_timeout_s:
                    self.schedule_remove(participant, "silent")
            empty_for = now - room.emptied if not room.participants and not room.reserved else 0.0
            if empty_for > self.limits.empty_room_ttl_s or now - room.created > self.limits.room_ttl_s:
                self.rooms.pop(room.id, None)
                for participant in list(room.participants.values()):
                    self.schedule_remove(participant, "room expired")

    def tick(self) -> None:
        for room in self.rooms.values():
            room.send_stats()

    async def close(self) -> None:
        for room in list(self.rooms.values()):
            for participant in list(room.participants.values()):
                await self.remove(participant, "server stopping")
        self.rooms.clear()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=10.0)
