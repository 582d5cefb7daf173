"""All rooms on this server and the lifecycle of everyone in them: create, join, leave, sweep, close.

Everything a participant owns (connection, drain tasks, slots, feeds they speak into) is released by
``Registry.remove`` — called on leave, on a failed or closed connection, and by ``sweep`` when a participant has
gone silent or never connected — so a vanished browser costs nothing after a few seconds. The routing inside one
room (who hears whom through which feed) is ``rooms.Room``'s.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from .errors import ApiError
from .feeds.base import FeedFactory
from .limits import Limits, MediaSettings
from .peer import OfferLayout, Peer, PeerCallbacks, parse_offer, return_freed_memory
from .rooms import Participant, Room, secret_matches
from .tasks import spawn

log = logging.getLogger(__name__)


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
