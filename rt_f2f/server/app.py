"""The HTTP side of the call server (aiohttp): rooms, joining with an offer, leaving, and the web client.

Every request body is size-, time- and depth-bounded and parsed defensively: malformed JSON, fields, headers or
SDP are the caller's fault and get a 4xx with a JSON ``{"error", "hint"}``; a 5xx means a bug here, answered in the
same shape and logged in one line. One client address is rate-limited and holds a bounded number of rooms. Links
are built from the configured public URL (or the address the server is bound to), never from the request's
``Host``. The API and every limit are described in docs/API.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import LanguageError
from ..languages import LANGUAGES, validate
from ..models.plan import language_status
from . import bounded_json
from .errors import ApiError
from .feeds.base import FeedFactory
from .feeds.factory import default_feed_factory
from .http_guard import GuardedAppRunner
from .limits import ClientLimiter, Limits, MediaSettings
from .registry import Registry

log = logging.getLogger(__name__)

# The browser client ships as package data (web/ in the repository, rt_f2f.web once installed).
DEFAULT_WEB_DIR = Path(str(resources.files("rt_f2f.web")))
REGISTRY = web.AppKey("registry", Registry)
TICKER = web.AppKey("ticker", asyncio.Task)
CLIENTS = web.AppKey("clients", ClientLimiter)
# files the web client is made of; anything else in its folder (the package's __init__.py) is not served
STATIC_SUFFIXES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
}
_STATIC_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,100}$")
# a Host header: a DNS name or IPv4 address, or a bracketed IPv6 address, with an optional port
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::(\d{1,5}))?$")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Permissions-Policy": "camera=(self), microphone=(self)",
}


@dataclass
class ServerConfig:
    limits: Limits = field(default_factory=Limits)
    media: MediaSettings = field(default_factory=MediaSettings)
    ice_servers: list[dict[str, Any]] = field(default_factory=list)  # RTCIceServer dicts: urls, username, credential
    web_dir: Path | None = DEFAULT_WEB_DIR
    tick_s: float = 1.0  # how often stats go out and silent participants are swept
    public_url: str | None = None  # base of join links, e.g. https://call.example.org; None: the bound address


CONFIG = web.AppKey("config", ServerConfig)


def create_app(config: ServerConfig | None = None, feed_factory: FeedFactory | None = None) -> web.Application:
    """The aiohttp application; ``feed_factory`` decides what listeners get (default: passthrough / SpeechEngine)."""
    config = config or ServerConfig()
    limits = config.limits
    app = web.Application(middlewares=[_guard], client_max_size=limits.max_body_bytes)
    app[CONFIG] = config
    app[CLIENTS] = ClientLimiter(limits.client_requests_per_second, limits.client_burst, limits.max_tracked_clients)
    app[REGISTRY] = Registry(config.limits, config.media, feed_factory or default_feed_factory(), config.ice_servers)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/config", get_config)
    app.router.add_post("/api/rooms", create_room)
    app.router.add_get("/api/rooms/{room_id}", get_room)
    app.router.add_post("/api/rooms/{room_id}/join", join_room)
    app.router.add_post("/api/rooms/{room_id}/leave", leave_room)
    if config.web_dir is not None and (config.web_dir / "index.html").is_file():
        web_dir = config.web_dir
        index = web_dir / "index.html"

        async def serve_index(request: web.Request) -> web.FileResponse:
            return web.FileResponse(index)

        async def serve_static(request: web.Request) -> web.FileResponse:
            """Only the client's own files: a flat name with a known suffix, a regular file, no symlink."""
            name = request.match_info["name"]
            path = web_dir / name
            suffix = path.suffix.lower()
            if not _STATIC_NAME.match(name) or suffix not in STATIC_SUFFIXES or path.is_symlink() or not path.is_file():
                raise web.HTTPNotFound()
            return web.FileResponse(path, headers={"Content-Type": STATIC_SUFFIXES[suffix]})

        app.router.add_get("/", serve_index)
        app.router.add_get("/static/{name}", serve_static)
    app.on_response_prepare.append(_security_headers)
    app.cleanup_ctx.append(_background)
    return app


async def _background(app: web.Application) -> AsyncIterator[None]:
    """One task per server sweeps silent participants and sends stats; stopping the app closes every room."""
    registry = app[REGISTRY]
    period = app[CONFIG].tick_s

    async def ticker() -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await registry.sweep()
                registry.tick()
            except Exception:  # a bug in one room must not stop the sweeping of all the others
                log.exception("sweep failed")

    task = asyncio.create_task(ticker(), name="rt-f2f-sweeper")
    app[TICKER] = task
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await registry.close()


def make_runner(app: web.Application) -> web.AppRunner:
    """The runner every server uses: aiohttp's own errors as JSON, the header timeout from the app's limits."""
    return GuardedAppRunner(app, header_timeout_s=app[CONFIG].limits.header_timeout_s)


async def serve_locally(app: web.Application, host: str = "127.0.0.1") -> tuple[web.AppRunner, str]:
    """Serve ``app`` from this process on a free port (benchmarks and tests that run clients beside the server):
    the runner (``await runner.cleanup()`` stops it) and the base URL."""
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner, f"http://{host}:{site._server.sockets[0].getsockname()[1]}"


@web.middleware
async def _guard(request: web.Request, handler) -> web.StreamResponse:
    """Checks every request shares (Host, client rate), and every failure as a JSON answer with one log line."""
    try:
        _check_host(request)
        if request.method == "POST" and _is_api(request):
            _check_client_rate(request)
        return await handler(request)
    except ApiError as exc:
        retry_after = exc.retry_after
        if retry_after is None and exc.status == 503:
            retry_after = request.app[CONFIG].limits.retry_after_s
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        if exc.status >= 500 or exc.status == 429:
            log.info("%s %s from %s: %d %s", request.method, request.path, request.remote, exc.status, exc.message)
        response = web.json_response(exc.to_json(), status=exc.status, headers=headers)
        if exc.status in (408, 413):  # the rest of the body is not worth waiting for
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400 or not _is_api(request):
            raise
        return web.json_response({"error": exc.reason}, status=exc.status)
    except ConnectionError as exc:  # the client went away mid-request: nobody to answer, nothing to debug
        log.info("%s %s from %s: client went away (%s)", request.method, request.path, request.remote, exc)
        return web.json_response({"error": "connection lost"}, status=400)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a bug: one line (type and where), never the traceback's flood nor internals
        frame = exc.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = f"{frame.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}" if frame else "?"
        detail = " ".join(str(exc).split())[:200]
        log.error("%s %s: unhandled %s at %s: %s", request.method, request.path, type(exc).__name__, where, detail)
        return web.json_response({"error": "internal server error"}, status=500)


def _check_host(request: web.Request) -> None:
    """A Host header, when sent, must be a plain host[:port]; it is never used to build anything."""
    host = request.headers.get("Host")
    if host is None:  # HTTP/1.0
        return
    match = _HOST.match(host)
    if match is None or (match.group(1) is not None and not 0 < int(match.group(1)) < 65536):
        raise ApiError(400, "the Host header is not a valid host[:port]", "send the server's name or address")


def _check_client_rate(request: web.Request) -> None:
    clients = request.app[CLIENTS]
    address = request.remote or "unknown"
    if not clients.allow(address):
        wait = max(1, int(clients.wait_s(address) + 0.999))
        raise ApiError(429, "too many requests from your address", f"wait {wait} s and try again", retry_after=wait)


def _public_base(request: web.Request) -> str:
    """Where join links point: the configured public URL, else the address this connection reached."""
    configured = request.app[CONFIG].public_url
    if configured:
        return configured.rstrip("/")
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    scheme = "https" if request.transport is not None and request.transport.get_extra_info("sslcontext") else "http"
    if not sockname:
        return ""
    host, port = sockname[0], sockname[1]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    if _is_api(request):
        response.headers.setdefault("Cache-Control", "no-store")


# -- request parsing ---------------------------------------------------------------------------------------------


async def _json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object: declared as JSON, within the size, time and nesting bounds."""
    limits = request.app[CONFIG].limits
    limit = limits.max_body_bytes
    if request.content_type != "application/json":  # text/plain would let any web page post here without CORS
        raise ApiError(415, "the request body must be sent as Content-Type: application/json", "send JSON ('{}')")
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"request body larger than {limit} bytes")
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            body = await request.read()
    except TimeoutError as exc:
        raise ApiError(408, f"the request body did not arrive within {limits.body_timeout_s:g} s") from exc
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, f"request body larger than {limit} bytes") from exc
    except (web.RequestPayloadError, HttpProcessingError, ClientPayloadError) as exc:  # e.g. a bad deflate body
        raise ApiError(400, "the request body could not be decoded", "check its Content-Encoding") from exc
    if not body:
        return {}
    try:
        data = bounded_json.loads(body, bounded_json.JsonBounds(limit, limits.max_json_depth))
    except bounded_json.JsonRefused as exc:
        raise ApiError(400, f"the request body is not acceptable JSON: {exc.reason}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


def _field(data: dict[str, Any], key: str, max_chars: int, default: str | None = None) -> str:
    value = data.get(key, default)
    if value is None:
        raise ApiError(400, f"missing field '{key}'")
    if not isinstance(value, str):
        raise ApiError(400, f"field '{key}' must be a string")
    if len(value) > max_chars:
        raise ApiError(400, f"field '{key}' is longer than {max_chars} characters")
    return value


def _display_name(data: dict[str, Any], limits: Limits) -> str:
    raw = _field(data, "name", limits.max_name_chars * 4, default="Guest")
    name = "".join(ch for ch in raw if unicodedata.category(ch)[0] != "C").strip()[: limits.max_name_chars]
    return name or "Guest"


def _language(data: dict[str, Any], key: str) -> str:
    try:
        return validate(_field(data, key, 16))
    except LanguageError as exc:
        raise ApiError(400, exc.message, exc.hint) from exc


def _bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


# -- handlers ----------------------------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    return web.json_response({"status": "ok", "rooms": len(registry.rooms), "participants": registry.participant_count})


async def get_config(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    limits = config.limits
    return web.json_response(
        {
            "languages": LANGUAGES,
            "language_status": language_status(),  # which this server can run, and why not (rt_f2f.models.plan)
            "max_participants": limits.max_participants,
            "slots": limits.max_participants - 1,
            "max_message_bytes": limits.max_message_bytes,
            "video_codec": config.media.video_codec,  # the page checks the browser has it before joining
        }
    )


async def create_room(request: web.Request) -> web.Response:
    await _json_body(request)  # no fields yet, but the body is still bounded and must be JSON
    room = request.app[REGISTRY].create_room(request.remote or "unknown")
    origin = _public_base(request)
    return web.json_response(
        {
            "id": room.id,
            "token": room.token,
            "join_url": f"{origin}/#room={room.id}&token={room.token}",
            "max_participants": room.limits.max_participants,
        },
        status=201,
    )


async def get_room(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    room = request.app[REGISTRY].room(request.match_info["room_id"], _bearer_token(request))
    return web.json_response(
        {
            "id": room.id,
            "participants": [p.public() for p in room.participants.values()],
            "max_participants": room.limits.max_participants,
            "slots": room.limits.max_participants - 1,
            "ice_servers": config.ice_servers,
        }
    )


async def join_room(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    limits = request.app[CONFIG].limits
    data = await _json_body(request)
    room = registry.room(request.match_info["room_id"], data.get("token"))
    if data.get("type", "offer") != "offer":
        raise ApiError(400, "field 'type' must be 'offer'")
    name = _display_name(data, limits)
    speak = _language(data, "speak")
    hear = _language(data, "hear")
    sdp = data.get("sdp")
    if not isinstance(sdp, str):
        raise ApiError(400, "field 'sdp' must be the offer's SDP text")
    started = time.perf_counter()
    participant, answer, slots = await registry.join(room, name, speak, hear, sdp)
    log.debug("answered %s in %.0f ms", participant.id, (time.perf_counter() - started) * 1000)
    return web.json_response(
        {
            "type": "answer",
            "sdp": answer,
            "participant": participant.public(),
            "secret": participant.secret,
            "slots": slots,
        }
    )


async def leave_room(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    data = await _json_body(request)
    room = registry.room(request.match_info["room_id"], data.get("token"))
    if not registry.leave(room, data.get("participant"), data.get("secret")):
        raise ApiError(404, "no such participant in this room, or the secret is wrong")
    return web.json_response({"left": True})
