"""The event's HTTP side: the organiser API, listener join/leave, and the listener and speaker pages.

Media never passes here: the pages talk WebRTC to Janus directly (its HTTP API, whose URL ``/api/event`` gives).
This server only counts listeners (so translators start and stop with them) and reports each language's state.

| method | path | what |
|---|---|---|
| GET | /api/event | languages offered, listeners, state, delay and health per language |
| POST | /api/event/languages | ``{"language": "es", "pin": false}`` offer a language (organiser) |
| DELETE | /api/event/languages/{code} | stop offering it; its listeners are told |
| POST | /api/event/listeners | ``{"language": "pt"}`` -> mountpoint to watch and a listener id |
| DELETE | /api/event/listeners/{id} | the listener left (the page sends it on close) |
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from aiohttp import web

from ..errors import RtF2fError
from ..server.http_guard import GuardedAppRunner
from .controller import EventController

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parents[1] / "web"  # the installed package (rt_f2f.web)
MAX_BODY = 4096


def _web_dir() -> Path:
    here = WEB_DIR if (WEB_DIR / "event.html").exists() else Path(__file__).resolve().parents[2] / "web"
    return here


async def _body(request: web.Request) -> dict:
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise _bad("the body must be JSON", 'send e.g. {"language": "pt"}') from None
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object", 'send e.g. {"language": "pt"}')
    return body


def _bad(message: str, hint: str = "") -> web.HTTPException:
    return _json_error(400, message, hint)


def _json_error(status: int, message: str, hint: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 409: web.HTTPConflict, 503: web.HTTPServiceUnavailable}
    return cls.get(status, web.HTTPBadRequest)(
        text=json.dumps({"error": message, "hint": hint}), content_type="application/json"
    )


def build_app(controller: EventController) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    routes = web.RouteTableDef()
    folder = _web_dir()

    def error(exc: RtF2fError, status: int = 400) -> web.HTTPException:
        return _json_error(status, exc.message, exc.hint)

    @routes.get("/api/event")
    async def status(_: web.Request) -> web.Response:
        return web.json_response(controller.status())

    @routes.post("/api/event/languages")
    async def add_language(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            state = await controller.add_language(str(body.get("language", "")), pinned=bool(body.get("pin")))
        except RtF2fError as exc:
            raise error(exc, 409 if "not enough" in exc.message else 400) from None
        return web.json_response({"language": state.code, "mountpoint": state.channel.mountpoint})

    @routes.delete("/api/event/languages/{code}")
    async def remove_language(request: web.Request) -> web.Response:
        try:
            await controller.remove_language(request.match_info["code"])
        except RtF2fError as exc:
            raise error(exc, 404) from None
        return web.json_response({"removed": request.match_info["code"]})

    @routes.post("/api/event/listeners")
    async def join(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            return web.json_response(controller.join(str(body.get("language", ""))))
        except RtF2fError as exc:
            raise error(exc, 409 if "not enough" in exc.message else 400) from None

    @routes.delete("/api/event/listeners/{listener}")
    @routes.post("/api/event/listeners/{listener}/leave")  # navigator.sendBeacon can only POST
    async def leave(request: web.Request) -> web.Response:
        await controller.leave(request.match_info["listener"])
        return web.json_response({"left": request.match_info["listener"]})

    @routes.get("/")
    @routes.get("/event")
    async def page(_: web.Request) -> web.FileResponse:
        return web.FileResponse(folder / "event.html")

    @routes.get("/event.js")
    async def script(_: web.Request) -> web.FileResponse:
        return web.FileResponse(folder / "event.js")

    @routes.get("/style.css")
    async def style(_: web.Request) -> web.FileResponse:
        return web.FileResponse(folder / "style.css")

    app.add_routes(routes)
    return app


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve the event's pages and API (port 0: a free one): the runner (``cleanup()`` stops it) and the base URL.

    The call server's ``serve_locally`` reads that server's own config from the app; the event app has none, so it
    gets the same guarded runner here (malformed HTTP answered in JSON, slow clients cut off).
    """
    runner = GuardedAppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, f"http://{host}:{site._server.sockets[0].getsockname()[1]}"
