"""aiohttp below the application: malformed HTTP answered in JSON with one log line, and slow clients cut off.

Requests aiohttp's parser rejects (a bad request line, an oversized header, garbage bytes) never reach the
application's middlewares: aiohttp answers them itself in ``RequestHandler.handle_error``, in plain text, and logs
each with a full traceback, so anyone can flood the log. ``GuardedRequestHandler`` answers those in the API's JSON
error shape and logs one line. Header read timeouts use aiohttp's own keep-alive timer, which is armed when a
connection opens and closes it if no complete request has arrived by then (slowloris); the body read timeout is
the application's (``app._json_body``).
"""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger(__name__)


def error_body(message: str, hint: str = "") -> str:
    body = {"error": message}
    if hint:
        body["hint"] = hint
    return json.dumps(body)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler, with its own error answers as one-line-logged JSON."""

    def log_exception(self, *args, **kw) -> None:
        """aiohttp logs a client's broken request (e.g. a body it cannot decode, read after the answer) with a
        traceback; one line with the exception's type and message says all there is."""
        exc = kw.pop("exc_info", None)
        message = args[0] % args[1:] if len(args) > 1 else (args[0] if args else "")
        detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else ""
        log.warning("%s %s", message, " ".join(detail.split())[:200])

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        reason = message or (f"{type(exc).__name__}: {exc}" if exc is not None else "")
        reason = " ".join(str(reason).split())[:200]
        log.warning("HTTP %d for %s: %s", status, request.remote, reason or "no detail")
        if request.writer.output_size > 0:  # a response is already on its way: the connection is broken
            raise ConnectionError("response already started")
        if status >= 500:
            body = error_body("internal server error")
        else:
            body = error_body("malformed HTTP request", "send a well-formed HTTP/1.1 request")
        response = web.Response(status=status, text=body, content_type="application/json")
        response.force_close()
        return response


class GuardedServer(web.Server):
    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections use ``GuardedRequestHandler``.

    ``header_timeout_s`` becomes aiohttp's keep-alive timeout: an idle connection, or one still sending its headers,
    is closed that long after it opened or after its last response.
    """

    def __init__(self, app: web.Application, header_timeout_s: float = 10.0, **kwargs) -> None:
        kwargs.setdefault("access_log", None)
        super().__init__(app, keepalive_timeout=header_timeout_s, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer  # same state, our connection handler
        return server
