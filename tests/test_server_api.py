"""The call server's HTTP API, data channel, routing and cleanup, driven through real HTTP and real WebRTC
(aiortc clients over loopback), plus its media buffers on their own.

Translation here goes through ``fakes.FakeSpeechEngine``, a test double for ``SpeechEngine`` that turns every
second of input into a 440 Hz tone and its captions: it makes "the listener got the engine's output, not the original"
measurable in a second, without models. The real engine is exercised in test_server_browser.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection
from audio_checks import dominant_frequency, tone
from fakes import FakeEngines, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rt_f2f.audio import StreamingResampler
from rt_f2f.errors import RtF2fError
from rt_f2f.server.app import REGISTRY, ServerConfig, create_app, serve_locally
from rt_f2f.server.buffers import LatestFrames, PcmFifo
from rt_f2f.server.client import ArrayAudioTrack, PatternVideoTrack, RoomClient
from rt_f2f.server.clockmap import WallClockMap
from rt_f2f.server.errors import ApiError
from rt_f2f.server.feeds.factory import default_feed_factory
from rt_f2f.server.ingest import StaleFrames, drain_track
from rt_f2f.server.limits import Limits, MediaSettings, TokenBucket
from rt_f2f.server.peer import add_bitrate_hints, parse_offer

RATE = 48000


# -- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice skips 127.0.0.1 when gathering; tests run over loopback only (no network needed)."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"])


@contextlib.asynccontextmanager
async def running_server(
    config: ServerConfig | None = None, feed_factory=None
) -> AsyncIterator[tuple[web.Application, str]]:
    # many rooms from one address in quick succession: client limits are tested in test_robustness_server.py
    app = create_app(
        config or ServerConfig(web_dir=None, limits=Limits(max_rooms_per_client=1000, client_burst=1000)), feed_factory
    )
    runner, base = await serve_locally(app)
    try:
        yield app, base
    finally:
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[tuple[web.Application, str]]:
    async with running_server() as served:
        yield served


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def new_room(http: aiohttp.ClientSession, base: str) -> dict:
    async with http.post(f"{base}/api/rooms", json={}) as r:
        assert r.status == 201
        return await r.json()


async def open_room(base: str) -> dict:
    async with aiohttp.ClientSession() as http:
        return await new_room(http, base)


async def browser_like_offer(slots: int = 1, data_channel: bool = True) -> str:
    """A real offer shaped as the web client makes it (microphone, camera, slot pairs, data channel)."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendonly")
    pc.addTransceiver("video", direction="sendonly")
    for _ in range(slots):
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
    if data_channel:
        pc.createDataChannel("rt-f2f")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


@pytest.fixture
def tone_engines() -> FakeEngines:
    return FakeEngines(source_captions=True)


def tone_server(engines: FakeEngines, config: ServerConfig | None = None):
    return running_server(config or ServerConfig(web_dir=None), default_feed_factory(engines))


def speaker(base: str, room: dict, freq: float = 1000.0, **kw) -> RoomClient:
    """A participant whose microphone plays a steady tone and whose camera is small (cheap to encode)."""
    return RoomClient(
        base,
        room["id"],
        room["token"],
        audio=ArrayAudioTrack(tone(freq, 2.0), 16000, loop=True),
        video=PatternVideoTrack(160, 120, 10),
        **kw,
    )


def slot_audio(client: RoomClient, speaker_id: str, last_s: float) -> np.ndarray:
    slot = client.slot_of(speaker_id)
    assert slot is not None, "the speaker has no slot on this listener"
    samples = client.slots[slot].audio_samples_array()
    return samples[-int(last_s * RATE) :]


# -- HTTP API ----------------------------------------------------------------------------------------------------


async def test_healthz_and_config(server, http):
    _, base = server
    async with http.get(f"{base}/healthz") as r:
        assert r.status == 200
        assert (await r.json()) == {"status": "ok", "rooms": 0, "participants": 0}
    async with http.get(f"{base}/api/config") as r:
        config = await r.json()
    assert config["languages"]["pt"] == "Portuguese"
    assert config["slots"] == config["max_participants"] - 1 == 3


async def test_rooms_have_unguessable_tokens_and_need_them(server, http):
    _, base = server
    first, second = await new_room(http, base), await new_room(http, base)
    assert first["id"] != second["id"] and first["token"] != second["token"]
    assert len(first["token"]) >= 32  # 24 random bytes, url-safe
    assert first["join_url"].endswith(f"/#room={first['id']}&token={first['token']}")
    url = f"{base}/api/rooms/{first['id']}"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {second['token']}"}):
        async with http.get(url, headers=headers) as r:
            assert r.status == 404
            assert "error" in await r.json()
    async with http.get(url, headers={"Authorization": f"Bearer {first['token']}"}) as r:
        assert r.status == 200
        body = await r.json()
    assert body["participants"] == [] and body["ice_servers"] == []


async def test_join_needs_the_room_token(server, http):
    _, base = server
    room = await new_room(http, base)
    offer = await browser_like_offer()
    body = {"speak": "en", "hear": "pt", "sdp": offer, "type": "offer"}
    for token in (None, "", "x" * 32, room["token"][:-1], "ü" * 32, 12345):
        async with http.post(f"{base}/api/rooms/{room['id']}/join", json={**body, "token": token}) as r:
            assert r.status == 404
    async with http.post(f"{base}/api/rooms/unknown/join", json={**body, "token": room["token"]}) as r:
        assert r.status == 404


@pytest.mark.parametrize(
    "payload, status",
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b"\xff\xfe\x00", 400),
        (json.dumps({"speak": "en", "hear": "pt", "sdp": "v=0"}).encode(), 400),  # no valid SDP
        (json.dumps({"speak": "klingon", "hear": "pt", "sdp": "v=0"}).encode(), 400),
        (json.dumps({"speak": 5, "hear": "pt", "sdp": "v=0"}).encode(), 400),
        (json.dumps({"speak": "en", "hear": "pt", "sdp": ["v=0"]}).encode(), 400),
        (json.dumps({"speak": "en", "hear": "pt", "sdp": "v=0", "type": "answer"}).encode(), 400),
        (json.dumps({"speak": "en", "hear": "pt", "sdp": "v=0", "name": "x" * 1000}).encode(), 400),
    ],
)
async def test_malformed_join_requests_get_4xx_json(server, http, payload, status):
    _, base = server
    room = await new_room(http, base)
    if payload.startswith(b"{") and payload != b"{not json":
        payload = json.dumps({**json.loads(payload), "token": room["token"]}).encode()
    headers = {"Content-Type": "application/json"}
    async with http.post(f"{base}/api/rooms/{room['id']}/join", data=payload, headers=headers) as r:
        assert r.status == status
        assert "error" in await r.json()


async def test_language_errors_carry_a_hint(server, http):
    _, base = server
    room = await new_room(http, base)
    body = {"token": room["token"], "speak": "portugese", "hear": "en", "sdp": await browser_like_offer()}
    async with http.post(f"{base}/api/rooms/{room['id']}/join", json=body) as r:
        assert r.status == 400
        error = await r.json()
    assert "portugese" in error["error"] and "ISO 639-1" in error["hint"]


async def test_offers_of_the_wrong_shape_are_refused(server, http):
    _, base = server
    room = await new_room(http, base)
    url = f"{base}/api/rooms/{room['id']}/join"
    good = await browser_like_offer()
    cases = {
        "no data channel": await browser_like_offer(data_channel=False),
        "not bundled": "\r\n".join(line for line in good.split("\r\n") if not line.startswith("a=group:BUNDLE")),
        "too many slots": await browser_like_offer(slots=4),  # the room holds 4: 3 remote slots at most
        "no fingerprint": "\r\n".join(line for line in good.split("\r\n") if not line.startswith("a=fingerprint")),
    }
    for case, sdp in cases.items():
        async with http.post(url, json={"token": room["token"], "speak": "en", "hear": "en", "sdp": sdp}) as r:
            assert r.status == 400, case
            assert "error" in await r.json()
    app = server[0]
    assert app[REGISTRY].participant_count == 0
    assert app[REGISTRY].rooms[room["id"]].reserved == 0  # refused joins give their seat back


async def test_bodies_and_sdp_are_size_bounded(http):
    config = ServerConfig(web_dir=None, limits=Limits(max_body_bytes=8192, max_sdp_bytes=6000))
    async with running_server(config) as (_, base):
        room = await new_room(http, base)
        url = f"{base}/api/rooms/{room['id']}/join"
        async with http.post(url, data=b"{" + b" " * 9000 + b"}", headers={"Content-Type": "application/json"}) as r:
            assert r.status == 413
            assert "error" in await r.json()
        big_sdp = "v=0\r\n" + "a=x-padding\r\n" * 600
        async with http.post(url, json={"token": room["token"], "speak": "en", "hear": "en", "sdp": big_sdp}) as r:
            assert r.status == 413


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sdp=st.one_of(
        st.text(max_size=300),
        st.lists(st.sampled_from(["v=0", "m=audio 9 UDP/TLS/RTP/SAVPF 96", "a=rtpmap:96", "a=mid:", "c=IN"])).map(
            "\r\n".join
        ),
    ),
    name=st.one_of(st.none(), st.text(max_size=50), st.integers()),
)
async def test_arbitrary_sdp_and_fields_never_cause_5xx(server, http, sdp, name):
    _, base = server
    room = await new_room(http, base)
    body = {"token": room["token"], "speak": "en", "hear": "pt", "sdp": sdp, "name": name}
    async with http.post(f"{base}/api/rooms/{room['id']}/join", json=body) as r:
        assert 400 <= r.status < 500
        assert "error" in await r.json()


async def test_room_limit(http):
    async with running_server(ServerConfig(web_dir=None, limits=Limits(max_rooms=2))) as (_, base):
        await new_room(http, base)
        await new_room(http, base)
        async with http.post(f"{base}/api/rooms", json={}) as r:
            assert r.status == 503
            assert "error" in await r.json()


async def test_participant_limit(http):
    async with running_server(ServerConfig(web_dir=None, limits=Limits(max_participants=2))) as (app, base):
        room = await new_room(http, base)
        clients = [RoomClient(base, room["id"], room["token"], name=f"p{i}", slots=1) for i in range(3)]
        try:
            await clients[0].join()
            await clients[1].join()
            with pytest.raises(RtF2fError, match="409"):
                await clients[2].join()
            assert app[REGISTRY].participant_count == 2
        finally:
            await asyncio.gather(*(c.close() for c in clients))


async def test_empty_rooms_expire(http):
    config = ServerConfig(web_dir=None, limits=Limits(empty_room_ttl_s=0.3), tick_s=0.1)
    async with running_server(config) as (app, base):
        room = await new_room(http, base)
        await wait_until(lambda: room["id"] not in app[REGISTRY].rooms, timeout=3.0)
        async with http.get(
            f"{base}/api/rooms/{room['id']}", headers={"Authorization": f"Bearer {room['token']}"}
        ) as r:
            assert r.status == 404


async def test_rooms_expire_even_when_occupied(http):
    config = ServerConfig(web_dir=None, limits=Limits(room_ttl_s=1.5), tick_s=0.1)
    async with running_server(config) as (app, base):
        room = await new_room(http, base)
        a = RoomClient(base, room["id"], room["token"], slots=1)
        try:
            await a.join()
            server_a = app[REGISTRY].rooms[room["id"]].participants[a.participant["id"]]
            await wait_until(lambda: server_a.peer.pc.connectionState == "closed", 5)
            assert room["id"] not in app[REGISTRY].rooms and app[REGISTRY].participant_count == 0
        finally:
            await a.close()


async def test_static_client_is_served_with_security_headers(http):
    async with running_server(ServerConfig()) as (_, base):
        async with http.get(f"{base}/") as r:
            assert r.status == 200
            assert "rt-f2f" in await r.text()
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        async with http.get(f"{base}/static/app.js") as r:
            assert r.status == 200
        async with http.get(f"{base}/static/../pyproject.toml") as r:
            assert r.status in (403, 404)


# -- WebRTC: joining, routing, data channel, cleanup --------------------------------------------------------------


async def test_same_language_passthrough_audio_video_and_roster(server):
    app, base = server
    room = await open_room(base)
    a = speaker(base, room, freq=1000.0, name="A", speak="en", hear="en", slots=3)
    b = RoomClient(base, room["id"], room["token"], name="B", speak="en", hear="en", slots=3)
    try:
        answer = await a.join()
        assert answer["slots"] == 3 and "x-google-start-bitrate=800" in answer["sdp"]
        await b.join()
        await b.wait_for(lambda: b.slot_of(a.participant["id"]) is not None, 5)
        await asyncio.sleep(2.0)
        heard = slot_audio(b, a.participant["id"], 1.0)
        assert abs(dominant_frequency(heard) - 1000.0) < 20
        frames = b.slots[b.slot_of(a.participant["id"])].video
        assert len(frames) >= 5 and frames[-1][1:] == (160, 120)
        roster = b.roster()
        assert roster["you"]["name"] == "B"
        assert roster["participants"] == [{**a.participant, "slot": 0, "mode": "passthrough"}]
        assert b.captions == []  # nobody translates: no captions
        stats = [m for m in b.messages if m["type"] == "stats"]
        assert stats and stats[-1]["speakers"][a.participant["id"]]["server_delay_s"] < 0.3
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_server_can_insist_on_h264():
    config = ServerConfig(web_dir=None, media=MediaSettings(video_codec="h264"))
    async with running_server(config) as (app, base):
        room = await open_room(base)
        a = speaker(base, room, name="A", slots=1)
        b = RoomClient(base, room["id"], room["token"], name="B", slots=1)
        try:
            answer = await a.join()
            video_codecs = {
                line.split()[1].split("/")[0]
                for section in answer["sdp"].split("m=")[1:]
                if section.startswith("video")
                for line in section.split("\r\n")
                if line.startswith("a=rtpmap:")
            }
            assert video_codecs == {"H264", "rtx"}
            await b.join()
            await b.wait_for(lambda: b.slot_of(a.participant["id"]) is not None, 5)
            slot = b.slots[b.slot_of(a.participant["id"])]
            await b.wait_for(lambda: len(slot.video) >= 3, 10)
            assert slot.video[-1][1:] == (160, 120)
        finally:
            await asyncio.gather(a.close(), b.close())


async def test_translated_listener_gets_engine_output_captions_and_delayed_video(tone_engines):
    async with tone_server(tone_engines) as (app, base):
        room = await open_room(base)
        a = speaker(base, room, freq=1000.0, name="A", speak="en", hear="pt", slots=1)
        b = RoomClient(base, room["id"], room["token"], name="B", speak="pt", hear="pt", slots=1)
        try:
            await b.join()
            await a.join()
            joined = time.monotonic()
            a_id = a.participant["id"]
            await b.wait_for(lambda: any(c["kind"] == "translation" for c in b.captions), 10)
            await asyncio.sleep(1.5)
            heard = slot_audio(b, a_id, 3.0)
            loud = heard[np.abs(heard) > 0.05]
            assert loud.size > 0.2 * RATE
            assert abs(dominant_frequency(heard) - 440.0) < 10  # the engine's voice, not the speaker's 1 kHz
            kinds = {(c["kind"], c["language"], c["final"]) for c in b.captions if c["speaker"] == a_id}
            assert {("source", "en", False), ("source", "en", True), ("translation", "pt", True)} <= kinds
            assert any(
                m == {"type": "status", "speaker": a_id, "language": "pt", "state": "running"} for m in b.messages
            )
            video = b.slots[b.slot_of(a_id)].video
            assert video and video[-1][1:] == (160, 120)
            # the picture waits for the speech: the fake engine's lag is ~1 s (it answers each second of input)
            assert video[0][0] - joined > 0.8
            stats = [m for m in b.messages if m["type"] == "stats"][-1]["speakers"][a_id]
            assert stats["mode"] == "translated" and 0.3 <= stats["delay_s"] <= 6.0
            assert stats["speech_lag_s"] is not None
            (engine,) = [e for e in tone_engines.made if e.target == "pt"]
            assert engine.rates == {16000} and engine.chunk_sizes == {960}  # 60 ms blocks at 16 kHz
            # A hears Portuguese and B speaks it: B -> A is passthrough, so the only engine is A's en -> pt
            assert [(e.source, e.target) for e in tone_engines.made] == [("en", "pt")]
        finally:
            await asyncio.gather(a.close(), b.close())


async def test_one_engine_per_speaker_and_language_shared_by_its_listeners(tone_engines):
    async with tone_server(tone_engines) as (app, base):
        room = await open_room(base)
        a = speaker(base, room, freq=1000.0, name="A", speak="en", hear="en", slots=3)
        listeners = [
            RoomClient(base, room["id"], room["token"], name=n, speak=s, hear=h, slots=3)
            for n, s, h in (("B", "pt", "pt"), ("C", "pt", "pt"), ("D", "en", "en"))
        ]
        try:
            for client in (a, *listeners):
                await client.join()
            b, c, d = listeners
            a_id = a.participant["id"]
            await b.wait_for(lambda: any(x["kind"] == "translation" for x in b.captions), 10)
            await c.wait_for(lambda: any(x["kind"] == "translation" for x in c.captions), 10)
            await d.wait_for(lambda: any(x["speaker"] == a_id and x["final"] for x in d.captions), 10)
            await asyncio.sleep(1.0)
            # one engine per (speaker, other language): A and D into pt, B and C into en; not one per listener (8)
            assert sorted((e.source, e.target) for e in tone_engines.made) == [("en", "pt")] * 2 + [("pt", "en")] * 2
            assert abs(dominant_frequency(slot_audio(b, a_id, 2.0)) - 440) < 10
            assert abs(dominant_frequency(slot_audio(c, a_id, 2.0)) - 440) < 10
            assert abs(dominant_frequency(slot_audio(d, a_id, 1.0)) - 1000) < 20  # same language: original
            # same-language listener D sees what A said (source captions) but gets no translation captions
            assert {x["kind"] for x in d.captions if x["speaker"] == a_id} == {"source"}
            assert {x["language"] for x in b.captions if x["speaker"] == a_id and x["kind"] == "translation"} == {"pt"}
        finally:
            await asyncio.gather(a.close(), *(x.close() for x in listeners))


async def test_engine_failure_falls_back_to_the_original_and_says_why():
    async with tone_server(FakeEngines(fail="load")) as (app, base):
        room = await open_room(base)
        a = speaker(base, room, freq=1000.0, name="A", speak="en", hear="pt", slots=1)
        b = RoomClient(base, room["id"], room["token"], name="B", speak="pt", hear="pt", slots=1)
        try:
            await b.join()
            await a.join()
            await b.wait_for(lambda: any(m.get("state") == "error" for m in b.messages), 5)
            error = next(m for m in b.messages if m.get("state") == "error")
            assert "no translator for this pair" in error["detail"]
            await asyncio.sleep(1.5)
            assert abs(dominant_frequency(slot_audio(b, a.participant["id"], 1.0)) - 1000) < 20
        finally:
            await asyncio.gather(a.close(), b.close())


async def test_data_channel_messages_are_checked(server):
    app, base = server
    room = await open_room(base)
    a = RoomClient(base, room["id"], room["token"], name="A", slots=1, ping_s=3600)
    try:
        await a.join()
        await a.wait_for(lambda: a.roster() is not None, 5)
        a.send({"type": "ping", "t": 12.5})
        a.send("x" * (Limits().max_message_bytes + 1))
        a.send("not json")
        a.send(json.dumps([1, 2]))
        a.send({"type": "teleport"})
        await a.wait_for(lambda: len([m for m in a.messages if m["type"] == "error"]) >= 4, 5)
        errors = [m["message"] for m in a.messages if m["type"] == "error"]
        assert any("larger than" in e for e in errors)
        assert any("not valid JSON" in e for e in errors)
        assert any("JSON object" in e for e in errors)
        assert any("teleport" in e for e in errors)
        pong = next(m for m in a.messages if m["type"] == "pong")
        assert pong["t"] == 12.5
        assert app[REGISTRY].participant_count == 1  # a few bad messages are answered, not punished
    finally:
        await a.close()


async def test_flood_of_bad_messages_disconnects(http):
    config = ServerConfig(web_dir=None, limits=Limits(max_bad_messages=3))
    async with running_server(config) as (app, base):
        room = await new_room(http, base)
        a = RoomClient(base, room["id"], room["token"], slots=1)
        try:
            await a.join()
            await a.wait_for(lambda: a.roster() is not None, 5)
            for _ in range(6):
                a.send("garbage")
            await wait_until(lambda: app[REGISTRY].participant_count == 0, 5)
        finally:
            await a.close()


async def test_leave_by_message_and_by_http(server, http):
    app, base = server
    room = await new_room(http, base)
    a = RoomClient(base, room["id"], room["token"], name="A", slots=1)
    b = RoomClient(base, room["id"], room["token"], name="B", slots=1)
    try:
        await a.join()
        await b.join()
        url = f"{base}/api/rooms/{room['id']}/leave"
        for secret in ("no", "ñö", None, 5):
            body = {"token": room["token"], "participant": b.participant["id"], "secret": secret}
            async with http.post(url, json=body) as r:
                assert r.status == 404
        body = {"token": room["token"], "participant": b.participant["id"], "secret": b.secret}
        async with http.post(url, json=body) as r:
            assert r.status == 200
        await wait_until(lambda: app[REGISTRY].participant_count == 1, 3)
        await a.wait_for(lambda: a.roster()["participants"] == [], 3)
        a.send({"type": "leave"})
        await wait_until(lambda: app[REGISTRY].participant_count == 0, 3)
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_vanished_and_never_connected_participants_are_removed(http):
    limits = Limits(idle_timeout_s=1.0, connect_timeout_s=1.0)
    async with running_server(ServerConfig(web_dir=None, limits=limits, tick_s=0.1)) as (app, base):
        room = await new_room(http, base)
        # joins, then falls silent: no media, no pings (a tab that froze, a laptop lid closed)
        silent = RoomClient(base, room["id"], room["token"], name="silent", slots=1, ping_s=3600)
        # posts an offer and never uses the answer
        offer = await browser_like_offer()
        try:
            await silent.join()
            body = {"token": room["token"], "speak": "en", "hear": "en", "sdp": offer}
            async with http.post(f"{base}/api/rooms/{room['id']}/join", json=body) as r:
                assert r.status == 200
            assert app[REGISTRY].participant_count == 2
            started = time.monotonic()
            await wait_until(lambda: app[REGISTRY].participant_count == 0, 5)
            assert time.monotonic() - started < 4.0
            server_room = app[REGISTRY].rooms[room["id"]]
            assert server_room.feeds == {} and server_room.reserved == 0
        finally:
            await silent.close()


async def test_closed_connection_is_cleaned_up_at_once(server):
    app, base = server
    room = await open_room(base)
    a = speaker(base, room, name="A", slots=1)
    b = RoomClient(base, room["id"], room["token"], name="B", slots=1)
    try:
        await a.join()
        await b.join()
        registry = app[REGISTRY]
        server_a = registry.rooms[room["id"]].participants[a.participant["id"]]
        await a.pc.close()  # no goodbye message: the connection just ends
        await wait_until(lambda: server_a.peer.pc.connectionState == "closed", 3)
        assert registry.participant_count == 1
        assert not server_a.peer._tasks  # its drain tasks are gone
        assert registry.rooms[room["id"]].feeds == {}
    finally:
        await asyncio.gather(a.close(), b.close())


# -- media buffers and helpers -----------------------------------------------------------------------------------


def test_pcm_fifo_prebuffers_caps_and_trims():
    fifo = PcmFifo(max_samples=1000, prebuffer=300, target=200)
    fifo.put(np.ones(200, np.float32))
    assert fifo.read(100) is None  # still filling the jitter buffer
    fifo.put(np.ones(200, np.float32))
    assert fifo.read(100).sum() == 100
    fifo.put(np.full(2000, 2.0, np.float32))  # a burst beyond the ceiling: oldest dropped
    assert len(fifo) == 1000 and fifo.dropped == 300 + 1000
    assert np.all(fifo.read(100) == 2.0)
    for _ in range(PcmFifo.TRIM_AFTER_READS):
        fifo.put(np.full(100, 2.0, np.float32))
        fifo.read(100)
    assert len(fifo) <= 300  # a backlog above target for a second is trimmed back
    out = fifo.read(5000)
    assert out.size == 5000 and np.all(out[len(out) - 100 :] == 0)  # short reads are zero-padded


def test_latest_frames_keeps_the_newest():
    sink = LatestFrames(maxlen=2)
    for i in range(5):
        sink.put(i)
    assert sink.dropped == 3
    assert asyncio.run(sink.get()) == 3


def test_streaming_resampler_has_no_seams():
    resampler = StreamingResampler(48000, 16000)
    signal = tone(300, 1.0, 48000)
    out = np.concatenate([resampler.process(signal[i : i + 960]) for i in range(0, signal.size, 960)])
    assert abs(out.size - 16000) < 64
    steady = out[200:-200]
    assert abs(dominant_frequency(steady, 16000) - 300) < 3
    assert np.max(np.abs(np.diff(steady))) < 0.05  # a block seam would show as a jump


async def test_drain_track_bounds_aiortc_backlog():
    class Track:
        kind = "video"

        def __init__(self) -> None:
            self._queue: asyncio.Queue = asyncio.Queue()

        async def recv(self):
            from aiortc.mediastreams import MediaStreamError

            frame = await self._queue.get()
            if frame is None:
                raise MediaStreamError
            return frame

    track = Track()
    for i in range(50):  # a consumer that stalled while 50 decoded frames piled up
        track._queue.put_nowait(i)
    track._queue.put_nowait(None)
    seen, dropped = [], []
    await drain_track(track, seen.append, max_backlog=3, on_drop=dropped.append)
    assert seen[0] == 0 and seen[-1] == 49 and len(seen) <= 5
    assert sum(dropped) == 50 - len(seen)


def test_stale_frames_are_spotted_by_their_timestamps():
    from fractions import Fraction
    from types import SimpleNamespace

    def frame(seconds: float) -> SimpleNamespace:
        return SimpleNamespace(pts=int(seconds * 90000), time_base=Fraction(1, 90000))

    stale = StaleFrames(max_lag_s=0.3)
    # on time (with a little jitter): kept
    assert not any(stale.stale(frame(i / 25), 100.0 + i / 25 + 0.01 * (i % 3)) for i in range(50))
    # a decoder catching up: frames 2-3 s of media time behind arrive in a burst at t=104: dropped
    assert all(stale.stale(frame(1.0 + i / 25), 104.0 + i * 0.001) for i in range(10))
    # the sender's timeline restarts from zero: stale at first, accepted after a second of it
    late = [stale.stale(frame(i / 25), 104.1 + i / 25) for i in range(40)]
    assert late[0] and not late[-1]
    # a timeline that jumps forward looks early, never late: kept
    assert not stale.stale(frame(900.0), 106.0)


def test_bitrate_hints_on_every_video_codec():
    sdp = "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 96",
            "a=rtpmap:96 opus/48000/2",
            "m=video 9 UDP/TLS/RTP/SAVPF 97 98 99",
            "a=rtpmap:97 VP8/90000",
            "a=rtcp-fb:97 nack",
            "a=rtpmap:98 rtx/90000",
            "a=fmtp:98 apt=97",
            "a=rtpmap:99 H264/90000",
            "a=fmtp:99 packetization-mode=1",
            "",
        ]
    )
    out = add_bitrate_hints(sdp, 800, 600, 2000).split("\r\n")
    hint = "x-google-start-bitrate=800;x-google-min-bitrate=600;x-google-max-bitrate=2000"
    assert f"a=fmtp:97 {hint}" in out and out.index(f"a=fmtp:97 {hint}") == out.index("a=rtpmap:97 VP8/90000") + 1
    assert f"a=fmtp:99 packetization-mode=1;{hint}" in out
    assert "a=fmtp:98 apt=97" in out  # rtx untouched
    assert not any(line.startswith("a=fmtp:96") for line in out)  # audio untouched
    assert out[-1] == ""


async def test_parse_offer_layout():
    layout = parse_offer(await browser_like_offer(slots=2), Limits())
    assert layout.slots == 2 and layout.has_microphone and layout.has_camera
    with pytest.raises(ApiError) as info:
        parse_offer("", Limits())
    assert info.value.status == 400


def test_wall_clock_map_and_token_bucket():
    clock = WallClockMap(horizon_s=10)
    for i in range(100):
        clock.add(i * 0.02, 1000.0 + i * 0.021)
    assert clock.wall_at(1.0) == pytest.approx(1000.0 + 50 * 0.021, abs=1e-6)
    assert clock.wall_at(-5.0) is None
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]
    now[0] = 1.0
    assert [bucket.allow() for _ in range(3)] == [True, True, False]


def test_serve_subcommand_is_registered_and_validates_ice_servers():
    from rt_f2f.cli import build_parser
    from rt_f2f.server.cli import ice_servers

    args = build_parser().parse_args(["serve", "--port", "9000", "--stun", "stun:stun.example.org:3478"])
    assert args.port == 9000 and args.host == "127.0.0.1" and callable(args.func)
    assert ice_servers([], None, None, None) == []
    servers = ice_servers(["stun:a:3478"], "turn:b:3478", "u", "p")
    assert servers == [{"urls": ["stun:a:3478"]}, {"urls": ["turn:b:3478"], "username": "u", "credential": "p"}]
    for bad in ((["http://x"], None, None, None), ([], "turn:b", None, None), ([], None, "u", "p")):
        with pytest.raises(RtF2fError):
            ice_servers(*bad)


def test_media_settings_are_plain_data():
    settings = replace(MediaSettings(), video_codec="h264")
    assert settings.video_codec == "h264" and MediaSettings().start_bitrate_kbps == 800
