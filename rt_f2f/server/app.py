"""The HTTP side of the call server (aiohttp): rooms, joining with an offer, leaving, and the web client.

Every request body is size-bounded and parsed defensively: malformed JSON, fields or SDP are the caller's fault
and get a 4xx with a JSON ``{"error", "hint"}``; a 5xx means a bug here. The API is described in docs/API.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import LanguageError
from ..languages import LANGUAGES, validate
from ..models.plan import language_status
from .errors import ApiError
from .limits import Limits, MediaSettings
from .rooms import Registry
from .translate import FeedFactory, default_feed_factory

log = logging.getLogger(__name__)

# The browser client ships as package data (web/ in the repository, rt_f2f.web once installed).
DEFAULT_WEB_DIR = Path(str(resources.files("rt_f2f.web")))
REGISTRY = web.AppKey("registry", Registry)
TICKER = web.AppKey("ticker", asyncio.Task)

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


CONFIG = web.AppKey("config", ServerConfig)


def create_app(config: ServerConfig | None = None, feed_factory: FeedFactory | None = None) -> web.Application:
    """The aiohttp application; ``feed_factory`` decides what listeners get (default: passthrough / SpeechEngine)."""
    config = config or ServerConfig()
    app = web.Application(middlewares=[_errors_as_json], client_max_size=config.limits.max_body_bytes)
    app[CONFIG] = config
    app[REGISTRY] = Registry(config.limits, config.media, feed_factory or default_feed_factory(), config.ice_servers)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/config", get_config)
    app.router.add_post("/api/rooms", create_room)
    app.router.add_get("/api/rooms/{room_id}", get_room)
    app.router.add_post("/api/rooms/{room_id}/join", join_room)
    app.router.add_post("/api/rooms/{room_id}/leave", leave_room)
    if config.web_dir is not None and (config.web_dir / "index.html").is_file():
        index = config.web_dir / "index.html"

        async def serve_index(request: web.Request) -> web.FileResponse:
            return web.FileResponse(index)

        app.router.add_get("/", serve_index)
        app.router.add_static("/static/", config.web_dir, follow_symlinks=False, show_index=False)
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


async def serve_locally(app: web.Application, host: str = "127.0.0.1") -> tuple[web.AppRunner, str]:
    """Serve ``app`` from this process on a free port (benchmarks and tests that run clients beside the server):
    the runner (``await runner.cleanup()`` stops it) and the base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner, f"http://{host}:{site._server.sockets[0].getsockname()[1]}"


@web.middleware
async def _errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response(exc.to_json(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400 or not _is_api(request):
            raise
        return web.json_response({"error": exc.reason}, status=exc.status)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": "internal server error"}, status=500)


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    if _is_api(request):
        response.headers.setdefault("Cache-Control", "no-store")


# -- request parsing ---------------------------------------------------------------------------------------------


async def _json_body(request: web.Request) -> dict[str, Any]:
    limit = request.app[CONFIG].limits.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"request body larger than {limit} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, f"request body larger than {limit} bytes") from exc
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "the request body is not valid JSON") from exc
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
    await _json_body(request)  # no fields yet, but the body is still bounded and must be JSON if present
    room = request.app[REGISTRY].create_room()
    origin = str(request.url.origin())
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
