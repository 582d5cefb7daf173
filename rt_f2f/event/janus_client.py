"""A small client for Janus's HTTP API (aiohttp): sessions, plugin handles, requests and the event long-poll.

Janus answers synchronous plugin requests (``create``, ``rtp_forward``, ``list``...) in the POST's response and
asynchronous ones (``join``, ``configure``, ``watch``, ``start``: anything carrying SDP) later, as an ``event`` with
the same transaction on the session's long-poll. ``JanusHandle.message`` hides that difference. A keep-alive
task holds the session open while nothing else is said.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .janus_process import JanusError

log = logging.getLogger(__name__)

Json = dict[str, Any]
_tx = itertools.count(1)


@dataclass
class JanusReply:
    """What a plugin said back: its data, and the SDP it sent, if any."""

    data: Json
    jsep: Json | None = None


@dataclass
class JanusHandle:
    session: JanusSession
    handle_id: int
    plugin: str
    events: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(256))  # webrtcup, media, hangup...
    dropped_events: int = 0

    @property
    def path(self) -> str:
        return f"{self.session.path}/{self.handle_id}"

    async def request(self, body: Json, timeout: float = 10.0) -> Json:
        """A synchronous plugin request: its plugin data, or ``JanusError`` when the plugin says error."""
        reply = await self.session._post(self.path, {"janus": "message", "body": body}, timeout)
        if reply.get("janus") == "ack":  # some requests are asynchronous after all
            reply = await self.session._wait(reply["transaction"], timeout)
        return _plugin_data(reply, body)

    async def message(self, body: Json, jsep: Json | None = None, timeout: float = 20.0) -> JanusReply:
        """An asynchronous request (possibly with SDP): waits for the plugin's event with our transaction."""
        payload: Json = {"janus": "message", "body": body}
        if jsep is not None:
            payload["jsep"] = jsep
        reply = await self.session._post(self.path, payload, timeout)
        if reply.get("janus") == "ack":
            reply = await self.session._wait(reply["transaction"], timeout)
        return JanusReply(_plugin_data(reply, body), reply.get("jsep"))

    async def detach(self) -> None:
        with contextlib.suppress(JanusError, aiohttp.ClientError, asyncio.TimeoutError):
            await self.session._post(self.path, {"janus": "detach"}, 5.0)
        self.session.handles.pop(self.handle_id, None)

    def _event(self, event: Json) -> None:
        if self.events.full():
            self.events.get_nowait()
            self.dropped_events += 1
        self.events.put_nowait(event)


def _plugin_data(reply: Json, body: Json) -> Json:
    if reply.get("janus") == "error":
        err = reply.get("error", {})
        raise JanusError(f"Janus refused '{body.get('request')}': {err.get('reason')} ({err.get('code')})")
    data = reply.get("plugindata", {}).get("data", {})
    if "error" in data:
        raise JanusError(f"Janus {reply.get('plugindata', {}).get('plugin')} refused '{body.get('request')}': "
                         f"{data['error']} ({data.get('error_code')})")  # fmt: skip
    return data


class JanusSession:
    """One Janus session over HTTP, with its long-poll and keep-alive tasks."""

    def __init__(self, url: str, http: aiohttp.ClientSession, session_id: int) -> None:
        self.url = url.rstrip("/")
        self.http = http
        self.session_id = session_id
        self.handles: dict[int, JanusHandle] = {}
        self._waiters: dict[str, asyncio.Future] = {}
        self._tasks: list[asyncio.Task] = []
        self.closed = asyncio.Event()  # set when Janus forgets the session or stops answering

    @property
    def path(self) -> str:
        return f"{self.url}/{self.session_id}"

    @classmethod
    async def create(cls, url: str, timeout: float = 5.0) -> JanusSession:
        http = aiohttp.ClientSession()
        try:
            reply = await _post(http, url.rstrip("/"), {"janus": "create"}, timeout)
            if reply.get("janus") != "success":
                raise JanusError(f"Janus at {url} refused a session: {reply.get('error')}")
        except BaseException:
            await http.close()
            raise
        session = cls(url, http, reply["data"]["id"])
        session._tasks = [
            asyncio.create_task(session._poll(), name="janus-poll"),
            asyncio.create_task(session._keepalive(), name="janus-keepalive"),
        ]
        return session

    async def attach(self, plugin: str) -> JanusHandle:
        reply = await self._post(self.path, {"janus": "attach", "plugin": plugin}, 5.0)
        if reply.get("janus") != "success":
            raise JanusError(f"Janus could not attach {plugin}: {reply.get('error')}",
                             "the event's Janus must load the VideoRoom and Streaming plugins")  # fmt: skip
        handle = JanusHandle(self, reply["data"]["id"], plugin)
        self.handles[handle.handle_id] = handle
        return handle

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._post(self.path, {"janus": "destroy"}, 2.0)
        await self.http.close()
        self.closed.set()

    async def _post(self, path: str, payload: Json, timeout: float) -> Json:
        return await _post(self.http, path, payload, timeout)

    async def _wait(self, transaction: str, timeout: float) -> Json:
        future = self._waiters.setdefault(transaction, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise JanusError(f"Janus did not answer transaction {transaction} within {timeout:.0f} s") from None
        finally:
            self._waiters.pop(transaction, None)

    async def _poll(self) -> None:
        failures = 0
        while True:
            try:
                async with self.http.get(f"{self.path}?maxev=16", timeout=aiohttp.ClientTimeout(total=40)) as resp:
                    body = await resp.json(content_type=None)
                failures = 0
            except (TimeoutError, aiohttp.ClientError, ValueError):
                failures += 1
                if failures >= 3:
                    self.closed.set()
                    return
                await asyncio.sleep(0.5)
                continue
            for event in body if isinstance(body, list) else [body]:
                self._dispatch(event)
            if self.closed.is_set():
                return

    def _dispatch(self, event: Json) -> None:
        kind = event.get("janus")
        if kind == "keepalive":
            return
        if kind == "error" and event.get("error", {}).get("code") == 458:  # no such session
            self.closed.set()
            return
        tx = event.get("transaction")
        if tx and tx in self._waiters and kind in ("event", "success", "error"):
            if not self._waiters[tx].done():
                self._waiters[tx].set_result(event)
            return
        if tx and kind in ("event", "success", "error"):  # answer raced ahead of our wait(): keep it
            future = self._waiters.setdefault(tx, asyncio.get_running_loop().create_future())
            future.set_result(event)
            return
        handle = self.handles.get(event.get("sender"))
        if handle is not None:
            handle._event(event)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(20)
            try:
                reply = await self._post(self.path, {"janus": "keepalive"}, 5.0)
                if reply.get("janus") == "error":
                    self.closed.set()
                    return
            except (TimeoutError, JanusError, aiohttp.ClientError):
                self.closed.set()
                return


async def _post(http: aiohttp.ClientSession, path: str, payload: Json, timeout: float) -> Json:
    payload = dict(payload, transaction=f"rtf2f-{next(_tx)}")
    try:
        async with http.post(path, json=payload, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            reply = await resp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise JanusError(f"Janus at {path.split('/janus')[0]}/janus is unreachable ({type(exc).__name__}: {exc})",
                         "start Janus or pass --janus URL of a running one (its HTTP API, …/janus)") from exc  # fmt: skip
    if not isinstance(reply, dict):
        raise JanusError(f"Janus answered something that is not a JSON object: {str(reply)[:120]}")
    return reply
