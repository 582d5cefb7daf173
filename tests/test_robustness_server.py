"""Robustness corpus for the call server: what an attacker or a careless client sends, and what must come back.

Organised by the classes of issue 15. Every case writes its expectation down: the status, a JSON body with an
``error`` (and a ``hint`` where the client can act), no traceback in the server's log (one line per rejected
request at most), no room created by a refused request, and a server that still answers ``/healthz`` afterwards
(``guarded_server`` checks the last two for every test).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rt_f2f.server import bounded_json
from rt_f2f.server.app import REGISTRY, ServerConfig, create_app, serve_locally
from rt_f2f.server.client import PatternVideoTrack, RoomClient
from rt_f2f.server.errors import ApiError
from rt_f2f.server.limits import ClientLimiter, Limits
from rt_f2f.server.peer import parse_offer

PUBLIC = "https://call.example.org"


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"])


@dataclass
class Served:
    app: web.Application
    base: str
    host: str
    port: int

    @property
    def rooms(self) -> int:
        return len(self.app[REGISTRY].rooms)


@contextlib.asynccontextmanager
async def guarded_server(caplog: pytest.LogCaptureFixture, **limits) -> AsyncIterator[Served]:
    """A server on a free port; afterwards: still healthy, and no log record carries a traceback."""
    limits.setdefault("client_burst", 1000)
    limits.setdefault("max_rooms_per_client", 1000)
    config = ServerConfig(web_dir=None, limits=Limits(**limits), public_url=PUBLIC, tick_s=0.1)
    app = create_app(config)
    runner, base = await serve_locally(app)
    host, port = base.removeprefix("http://").split(":")
    caplog.set_level(logging.INFO)
    try:
        yield Served(app, base, host, int(port))
        async with aiohttp.ClientSession() as http, http.get(f"{base}/healthz") as r:
            assert r.status == 200, "the server is no longer healthy"
    finally:
        await runner.cleanup()
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, [r.getMessage() for r in tracebacks]


async def raw_http(served: Served, request: bytes, read_timeout: float = 5.0) -> tuple[int | None, dict, bytes]:
    """Send ``request`` as bytes; the status, headers and body of the answer (status None: closed unanswered)."""
    reader, writer = await asyncio.open_connection(served.host, served.port)
    try:
        writer.write(request)
        await writer.drain()
        data = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(read_timeout):
                while chunk := await reader.read(65536):
                    data += chunk
        return parse_response(data)
    finally:
        writer.close()


def parse_response(data: bytes) -> tuple[int | None, dict, bytes]:
    if not data:
        return None, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


async def new_room(served: Served) -> dict:
    async with aiohttp.ClientSession() as http, http.post(f"{served.base}/api/rooms", json={}) as r:
        assert r.status == 201
        return await r.json()


def expect_json_error(status: int | None, headers: dict, body: bytes, expected: int) -> dict:
    assert status == expected, (status, body[:200])
    assert headers.get("content-type", "").startswith("application/json"), headers
    error = json.loads(body)
    assert isinstance(error.get("error"), str) and error["error"]
    assert "Traceback" not in error["error"] and ".py" not in error["error"]
    return error


def post(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    fields = {"Host": "localhost", "Content-Type": "application/json", "Content-Length": str(len(body))}
    fields.update(headers or {})
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v is not None)
    return f"POST {path} HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode() + body


# -- class 1: unbounded parsing ------------------------------------------------------------------------------------

NESTED_BODIES = {
    # input -> expected status (all 400: the body is not acceptable JSON, and nothing is created)
    "1500 open brackets": b"[" * 1500,
    "10000 nested objects": b'{"a":' * 10000 + b"1" + b"}" * 10000,
    "20 levels, well-formed": b"[" * 20 + b"]" * 20,
    "NaN": b'{"x": NaN}',
    "lone surrogate in a value": b'{"token": "\\ud800"}',
    "lone surrogate in a key": b'{"\\udfff": 1}',
    "not UTF-8": b'{"a": "\xff\xfe"}',
    "huge integer": b'{"a": ' + b"9" * 5000 + b"}",
    "array, not object": b"[1, 2]",
    "truncated": b'{"a": [1, 2',
}


@pytest.mark.parametrize("case", list(NESTED_BODIES))
async def test_room_creation_refuses_unacceptable_json(caplog, case):
    async with guarded_server(caplog) as served:
        status, headers, body = await raw_http(served, post("/api/rooms", NESTED_BODIES[case]))
        expect_json_error(status, headers, body, 400)
        assert served.rooms == 0


async def test_join_with_a_deep_body_is_400_and_costs_no_seat(caplog):
    async with guarded_server(caplog) as served:
        room = await new_room(served)
        deep = b'{"token": "' + room["token"].encode() + b'", "sdp": ' + b"[" * 3000 + b"]" * 3000 + b"}"
        status, headers, body = await raw_http(served, post(f"/api/rooms/{room['id']}/join", deep))
        expect_json_error(status, headers, body, 400)
        assert served.app[REGISTRY].rooms[room["id"]].reserved == 0


@pytest.mark.parametrize(
    "encoding,payload",
    [
        ("deflate", b"this is not deflate"),
        ("gzip", b"\x1f\x8b not gzip either"),
        ("deflate", zlib.compress(b"[" * 5000)),  # decodes fine, to something too deep
    ],
)
async def test_content_encoding_garbage_is_400(caplog, encoding, payload):
    async with guarded_server(caplog) as served:
        status, headers, body = await raw_http(served, post("/api/rooms", payload, {"Content-Encoding": encoding}))
        expect_json_error(status, headers, body, 400)
        assert served.rooms == 0


async def test_data_channel_refuses_deep_json_with_an_error_and_keeps_the_sender(caplog):
    async with guarded_server(caplog) as served:
        room = await new_room(served)
        client = RoomClient(served.base, room["id"], room["token"], slots=0, ping_s=0.5)
        try:
            await client.join()
            await client.wait_for(lambda: client.roster() is not None, 5)
            for message in ("[" * 1500, '{"a":' * 700, '{"type": "ping", "t": NaN}', '{"type": "\\ud800"}'):
                client.send(message)
            await client.wait_for(lambda: sum(m["type"] == "error" for m in client.messages) >= 4, 5)
            errors = [m["message"] for m in client.messages if m["type"] == "error"]
            assert sum("nested deeper" in e for e in errors) == 2, errors
            client.messages.clear()
            await client.wait_for(lambda: any(m["type"] == "pong" for m in client.messages), 5)  # still served
            assert served.app[REGISTRY].participant_count == 1
        finally:
            await client.close()


# -- class 2: header and encoding edge cases -------------------------------------------------------------------------

BAD_HOSTS = {
    # Host header -> the request is refused with 400 before any work (no room is created)
    "empty": "",
    "port out of range": "x:99999999",
    "port zero": "x:0",
    "non-ASCII": "caf\u00e9.example",
    "space inside": "a b",
    "user info": "user@evil.example",
    "path": "evil.example/x",
}


@pytest.mark.parametrize("case", list(BAD_HOSTS))
async def test_bad_host_headers_are_400_and_create_nothing(caplog, case):
    async with guarded_server(caplog) as served:
        request = post("/api/rooms", b"{}", {"Host": None}).replace(
            b"HTTP/1.1\r\n", b"HTTP/1.1\r\nHost: " + BAD_HOSTS[case].encode("utf-8") + b"\r\n", 1
        )
        status, headers, body = await raw_http(served, request)
        assert status == 400
        if headers.get("content-type", "").startswith("application/json"):
            expect_json_error(status, headers, body, 400)
        assert served.rooms == 0


MALFORMED_HTTP = {
    # bytes -> aiohttp's parser refuses them: a JSON 400 and one log line, never a traceback
    "NUL in Host": b"POST /api/rooms HTTP/1.1\r\nHost: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
    "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n",
    "bad method": b"G(T /api/config HTTP/1.1\r\nHost: x\r\n\r\n",
    "header without colon": b"GET /api/config HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    "huge header": b"GET /api/config HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    "bad content length": b"POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "bad chunk": b"POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", list(MALFORMED_HTTP))
async def test_malformed_http_is_a_json_400_with_one_log_line(caplog, case):
    async with guarded_server(caplog) as served:
        before = len(caplog.records)
        status, headers, body = await raw_http(served, MALFORMED_HTTP[case])
        expect_json_error(status, headers, body, 400)
        assert len(caplog.records) - before <= 1
        assert served.rooms == 0


async def test_tokens_that_cannot_be_text_are_404_not_500(caplog):
    async with guarded_server(caplog) as served:
        room = await new_room(served)
        get = f"GET /api/rooms/{room['id']} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
        for auth in (b"Bearer \xff\xfe\xfd", b"Bearer \xed\xa0\x80", b"\xc3\x28 \xc3\x28", b"Bearer"):
            status, headers, body = await raw_http(served, get + b"Authorization: " + auth + b"\r\n\r\n")
            assert status in (400, 404), (auth, status)
            expect_json_error(status, headers, body, status)
        leave = json.dumps({"token": "\ud800", "participant": "\udc00", "secret": "\ud800"}).encode()
        status, headers, body = await raw_http(served, post(f"/api/rooms/{room['id']}/leave", leave))
        expect_json_error(status, headers, body, 400)


async def test_client_leaving_mid_body_is_logged_in_one_line(caplog):
    async with guarded_server(caplog, body_timeout_s=1.0) as served:
        before = len(caplog.records)
        reader, writer = await asyncio.open_connection(served.host, served.port)
        writer.write(post("/api/rooms", b"")[:-4].replace(b"Content-Length: 0", b"Content-Length: 100") + b"{" * 10)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()  # gone, 90 bytes short
        await asyncio.sleep(0.5)
        assert len(caplog.records) - before <= 1
        assert served.rooms == 0


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(post("/api/rooms", b"").replace(b"Content-Length: 0", b"Content-Length: 100") + b"{}", id="short"),
        pytest.param(post("/api/rooms", b"", {"Expect": "100-continue", "Content-Length": "2"}), id="expect"),
    ],
)
async def test_a_body_that_never_comes_is_408(caplog, request_bytes):
    async with guarded_server(caplog, body_timeout_s=0.5) as served:
        status, headers, body = await raw_http(served, request_bytes)
        if status == 100:  # the interim answer to Expect: the real one follows in the same stream
            status, headers, body = parse_response(body)
        expect_json_error(status, headers, body, 408)
        assert served.rooms == 0


async def test_only_the_clients_own_files_are_served(caplog):
    config = ServerConfig(public_url=PUBLIC)
    app = create_app(config)
    runner, base = await serve_locally(app)
    try:
        async with aiohttp.ClientSession() as http:
            expected = {
                "/static/app.js": 200,
                "/static/style.css": 200,
                "/static/__init__.py": 404,
                "/static/__pycache__/x.pyc": 404,
                "/static/.hidden": 404,
                "/static/../pyproject.toml": 404,
                "/static/%2e%2e/%2e%2e/pyproject.toml": 404,
            }
            for path, status in expected.items():
                async with http.get(f"{base}{path}") as r:
                    assert r.status == status, path
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "error",
    [RecursionError("deep\nand long " * 50), KeyError("x"), UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates")],
)
async def test_a_bug_is_a_json_500_and_one_log_line(caplog, error):
    """Whatever a handler raises unexpectedly: JSON without internals, and one line (type and place) in the log."""
    app = create_app(ServerConfig(web_dir=None))

    async def broken(request: web.Request) -> web.Response:
        raise error

    app.router.add_get("/api/broken", broken)
    runner, base = await serve_locally(app)
    caplog.set_level(logging.INFO)
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/api/broken") as r:
            assert r.status == 500
            assert await r.json() == {"error": "internal server error"}
    finally:
        await runner.cleanup()
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and not lines[0].exc_info
    message = lines[0].getMessage()
    assert type(error).__name__ in message and "test_robustness_server.py" in message and "\n" not in message


# -- class 3: links never come from the request ---------------------------------------------------------------------


async def test_join_links_come_from_the_public_url_not_the_host_header(caplog):
    async with guarded_server(caplog) as served:
        for request in (
            post("/api/rooms", b"{}", {"Host": "evil.example"}),
            post("/api/rooms", b"{}", {"Host": "evil.example:8443", "X-Forwarded-Host": "evil2.example"}),
            post("http://evil.example/api/rooms", b"{}"),  # absolute-form request target
        ):
            status, _, body = await raw_http(served, request)
            assert status == 201
            link = json.loads(body)["join_url"]
            assert link.startswith(PUBLIC + "/#room=") and "evil" not in link


async def test_without_a_public_url_links_use_the_bound_address(caplog):
    app = create_app(ServerConfig(web_dir=None))
    runner, base = await serve_locally(app)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/api/rooms", json={}, headers={"Host": "evil.example"}) as r:
                link = (await r.json())["join_url"]
        assert link.startswith(base + "/#room=")
    finally:
        await runner.cleanup()


# -- class 4: one client cannot exhaust shared capacity ---------------------------------------------------------------


async def create(http: aiohttp.ClientSession, base: str, **kw) -> aiohttp.ClientResponse:
    async with http.post(f"{base}/api/rooms", **kw) as r:
        await r.read()
        return r


async def test_one_address_cannot_take_every_room(caplog):
    async with guarded_server(caplog, max_rooms=10, max_rooms_per_client=3, client_burst=100) as served:
        async with aiohttp.ClientSession() as http:
            statuses = [(await create(http, served.base, json={})).status for _ in range(20)]
            assert statuses.count(201) == 3 and set(statuses[3:]) == {429}
            refused = await create(http, served.base, json={})
            assert int(refused.headers["Retry-After"]) > 0
        # someone else (another loopback address) still gets a room
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector) as other:
            assert (await create(other, served.base, json={})).status == 201


async def test_requests_are_rate_limited_per_address_with_retry_after(caplog):
    async with guarded_server(caplog, client_requests_per_second=0.5, client_burst=4) as served:
        async with aiohttp.ClientSession() as http:
            statuses = []
            for _ in range(8):
                response = await create(http, served.base, json={})
                statuses.append(response.status)
            assert statuses[:4] == [201] * 4 and set(statuses[4:]) == {429}
            assert 1 <= int(response.headers["Retry-After"]) <= 2
            async with http.get(f"{served.base}/api/config") as r:  # reading is not limited
                assert r.status == 200


async def test_full_server_says_when_to_retry(caplog):
    async with guarded_server(caplog, max_rooms=1) as served:
        async with aiohttp.ClientSession() as http:
            assert (await create(http, served.base, json={})).status == 201
            refused = await create(http, served.base, json={})
            assert refused.status == 503 and int(refused.headers["Retry-After"]) > 0


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({"data": "{}", "headers": {"Content-Type": "text/plain"}}, id="text/plain"),
        pytest.param({"data": "{}", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, id="form"),
        pytest.param({}, id="no body, no type"),
    ],
)
async def test_posts_must_be_declared_json(caplog, kw):
    """A CORS-simple POST (no preflight) from any web page must not create rooms in visitors' browsers."""
    async with guarded_server(caplog) as served:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{served.base}/api/rooms", **kw) as r:
                assert r.status == 415
                assert "application/json" in (await r.json())["error"]
        assert served.rooms == 0


async def test_empty_rooms_expire_within_two_minutes_by_default():
    assert Limits().empty_room_ttl_s <= 120


def test_client_limiter_forgets_the_least_recent_address():
    now = [0.0]
    limiter = ClientLimiter(rate=1.0, burst=2, max_clients=2, clock=lambda: now[0])
    assert limiter.allow("a") and limiter.allow("a") and not limiter.allow("a")
    assert limiter.wait_s("a") == pytest.approx(1.0)
    limiter.allow("b")
    limiter.allow("c")  # "a" is forgotten: the table never holds more than max_clients
    assert len(limiter._buckets) == 2
    now[0] += 1.0
    assert limiter.allow("b")


# -- class 5: media input bounded by size ---------------------------------------------------------------------------


async def test_video_above_the_cap_is_refused_with_an_error(caplog):
    async with guarded_server(caplog, max_video_pixels=160 * 120) as served:
        room = await new_room(served)
        small = RoomClient(served.base, room["id"], room["token"], slots=0, video=PatternVideoTrack(160, 120, 5))
        big = RoomClient(served.base, room["id"], room["token"], slots=0, video=PatternVideoTrack(320, 240, 5))
        try:
            await small.join()
            await big.join()
            registry = served.app[REGISTRY]
            await big.wait_for(lambda: any(m["type"] == "error" for m in big.messages), 10)
            error = next(m for m in big.messages if m["type"] == "error")
            assert "320x240" in error["message"] and error["hint"]
            await big.wait_for(lambda: registry.participant_count == 1, 10)
            server_small = next(iter(registry.rooms[room["id"]].participants.values()))
            assert server_small.peer.video_pixels == 160 * 120  # the one within the cap is still served
        finally:
            await asyncio.gather(small.close(), big.close())


async def test_server_video_budget_refuses_the_participant_beyond_it(caplog):
    async with guarded_server(caplog, max_video_pixels=160 * 120, max_total_video_pixels=160 * 120) as served:
        room = await new_room(served)
        first = RoomClient(served.base, room["id"], room["token"], slots=0, video=PatternVideoTrack(160, 120, 5))
        second = RoomClient(served.base, room["id"], room["token"], slots=0, video=PatternVideoTrack(160, 120, 5))
        try:
            await first.join()
            registry = served.app[REGISTRY]
            await first.wait_for(
                lambda: (
                    registry.rooms[room["id"]].participants
                    and all(p.peer.video_pixels for p in registry.rooms[room["id"]].participants.values())
                ),
                10,
            )
            await second.join()
            await second.wait_for(lambda: any(m["type"] == "error" for m in second.messages), 10)
            assert "budget" in next(m for m in second.messages if m["type"] == "error")["message"]
            await second.wait_for(lambda: registry.participant_count == 1, 10)
        finally:
            await asyncio.gather(first.close(), second.close())


# -- class 6: slow clients ------------------------------------------------------------------------------------------


async def test_slowloris_connections_are_closed(caplog):
    async with guarded_server(caplog, header_timeout_s=0.5) as served:
        streams = [await asyncio.open_connection(served.host, served.port) for _ in range(5)]
        started = time.monotonic()
        try:
            for _, writer in streams:
                writer.write(b"GET /api/config HTTP/1.1\r\nHost: x\r\n")
            closed = 0
            for step in range(30):  # a header line every 0.1 s, never the blank line that ends them
                for reader, writer in streams:
                    if not reader.at_eof():
                        with contextlib.suppress(ConnectionError):
                            writer.write(f"X-Slow-{step}: 1\r\n".encode())
                await asyncio.sleep(0.1)
                for reader, _ in streams:
                    with contextlib.suppress(TimeoutError, ConnectionError):
                        async with asyncio.timeout(0.001):
                            await reader.read()
                closed = sum(reader.at_eof() for reader, _ in streams)
                if closed == len(streams):
                    break
            assert closed == len(streams), "slow connections were left open"
            assert time.monotonic() - started < 2.5  # held for the header timeout, not for as long as they like
        finally:
            for _, writer in streams:
                writer.close()


# -- property-based: the JSON and SDP entry points ------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=400), st.binary(max_size=400).map(lambda b: b.decode("latin-1"))))
def test_bounded_json_refuses_cleanly_or_parses(text):
    try:
        bounded_json.loads(text, bounded_json.JsonBounds(4096, 8))
    except bounded_json.JsonRefused as exc:
        assert exc.reason


@settings(max_examples=200, deadline=None)
@given(json_values, st.integers(min_value=0, max_value=60))
def test_bounded_json_round_trips_what_fits_and_refuses_depth(value, wrap):
    text = "[" * wrap + json.dumps(value) + "]" * wrap
    depth = bounded_json.nesting_depth(text, 10_000)
    if depth <= 16 and len(text.encode("utf-8", "surrogatepass")) <= 65536:
        try:
            parsed = bounded_json.loads(text, bounded_json.JsonBounds(65536, 16))
        except bounded_json.JsonRefused as exc:  # only lone surrogates may be refused here
            assert "surrogate" in exc.reason
            return
        for _ in range(wrap):
            parsed = parsed[0]
        assert parsed == value
    else:
        with pytest.raises(bounded_json.JsonRefused):
            bounded_json.loads(text, bounded_json.JsonBounds(65536, 16))


SDP_LINES = [
    "v=0",
    "o=- 1 1 IN IP4 0.0.0.0",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1 2",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "m=video 9 UDP/TLS/RTP/SAVPF 96",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 0.0.0.0",
    "a=mid:0",
    "a=rtpmap:111 opus/48000/2",
    "a=rtpmap:96 VP8/90000",
    "a=ice-ufrag:abcd",
    "a=ice-pwd:abcdefghijklmnopqrstuv",
    "a=fingerprint:sha-256 AA:BB",
    "a=setup:actpass",
    "a=sendonly",
    "a=candidate:1 1 udp 1 127.0.0.1 9 typ host",
    "a=sctp-port:5000",
    "a=rtcp-fb:96 nack",
    "a=fmtp:96 x=\ud800",
]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.lists(st.sampled_from(SDP_LINES), max_size=40).map("\r\n".join),
        st.lists(st.sampled_from(SDP_LINES) | st.text(max_size=30), max_size=20).map("\n".join),
    )
)
def test_parse_offer_refuses_with_a_4xx_or_accepts(sdp):
    try:
        layout = parse_offer(sdp, Limits())
    except ApiError as exc:
        assert 400 <= exc.status < 500 and exc.message
    else:
        assert 0 <= layout.slots <= Limits().max_participants - 1


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
async def test_arbitrary_bodies_never_cause_5xx_or_tracebacks(caplog, body):
    async with guarded_server(caplog) as served:
        for path in ("/api/rooms", "/api/rooms/nope/join", "/api/rooms/nope/leave"):
            status, headers, answer = await raw_http(served, post(path, body))
            assert status is not None and status < 500
            if status >= 400:
                expect_json_error(status, headers, answer, status)
