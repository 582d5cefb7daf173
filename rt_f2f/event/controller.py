"""The event controller: which translators run, which feed each channel carries, and what listeners are told.

State lives here, in one asyncio loop: the languages offered, the listeners of each, one translator actor per
active language, and the Janus layout (``EventSfu``). A monitor tick (twice a second) reconciles them:
- Janus gone (our process died, or its API stopped answering): restart it when we own it, re-create the room
  and mountpoints on the same ports, re-publish the speaker file and every translator.
- A translator whose process died (Ray says so at once), or that misses its health deadline three times in a row
  (a busy worker answers late, so one miss is not a failure), is *failed over*: its channel carries the original
  and its listeners get a status note. Ray restarts the actor; once it answers again it re-publishes and
  the channel switches back (another note).
- Each channel is forwarded from the feed it should carry now (``desired_feed``); nothing else moves.
Translators start when a language's first listener arrives and stop when its last leaves, unless pinned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import languages
from ..errors import LanguageError, RtF2fError
from ..priority import this_thread_niceness
from . import placement
from .janus_client import JanusSession
from .janus_process import JanusConfig, JanusError, JanusProcess, process_cpu_seconds, wait_ready
from .rtc import Publisher, publish
from .sfu import ORIGINAL, Channel, EventSfu
from .source_asr import SourceASR
from .speaker_file import SpeakerFile, open_speaker_file
from .translator import SourceClause, WorkerSpec

log = logging.getLogger(__name__)

SPEAKER = "speaker"  # the display name a speaker publishes under (the speaker page, or --input FILE)
# A translator's health call left unanswered this long means it hangs, and its channel carries the original. Ray
# says at once when a worker's process died; a worker that lives answers, but on a loaded machine (two cores, one
# of them taken) it took 1-3 s, sometimes more: a slow answer is waited for, never counted as a failure.
HUNG_AFTER_S = 10.0
SLOW_ANSWER_S = 2.0  # a health answer slower than this is logged, with how long the worker's event loop stalled
TICK_S = 0.5
MAX_LISTENERS = 10000
STOP_STEP_S = 10.0


@dataclass
class EventConfig:
    source: str
    targets: tuple[str, ...]
    janus_url: str | None = None  # None: start Janus ourselves
    ice_interfaces: tuple[str, ...] = ()
    # an address of this machine that listeners' browsers and the translators on other Ray nodes reach: the Janus
    # we start serves its HTTP API there and its mountpoints take captions there (127.0.0.1: all on one machine)
    public_host: str = "127.0.0.1"
    ray_address: str | None = None
    ray_cpus: int | None = None  # local instance only: cores Ray may hand out (default: all)
    translator_cpus: float = 0.5
    input_file: str | None = None
    input_loop: bool = False  # play --input again and again (demos, soak tests)
    pin: bool = False  # start every translator now, keep them without listeners
    checkpoint_path: str | None = None  # lip-sync: every translator re-mouths the speaker's video
    lipsync_backend: str | None = None
    mt_model: str | None = None
    tts_backend: str | None = None
    asr_model: str = "whisper-base"
    room: int = 0  # 0: derived from the clock

    def __post_init__(self) -> None:
        self.source = languages.validate(self.source)
        targets = tuple(dict.fromkeys(languages.validate(t) for t in self.targets))
        if self.source in targets:
            raise LanguageError(f"the source language '{self.source}' is also a target",
                                "listeners of the source language get the original: drop it from --targets")  # fmt: skip
        self.targets = targets
        if not self.room:
            self.room = 1000 + int(time.time()) % 8000


@dataclass
class LanguageState:
    code: str
    channel: Channel
    pinned: bool = False
    listeners: set[str] = field(default_factory=set)
    actor: Any = None
    state: str = "idle"  # idle | starting | live | failed-over (original carried) | error
    feed_id: int | None = None
    failures: int = 0
    node: str | None = None
    health: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    starting: asyncio.Task | None = None
    clauses_lost: int = 0
    probe: asyncio.Future | None = None  # the health call not answered yet
    probe_sent: float = 0.0  # time.monotonic() it was sent


class EventController:
    def __init__(self, config: EventConfig) -> None:
        self.config = config
        self.sfu: EventSfu | None = None
        self.janus: JanusProcess | None = None
        self.janus_url = config.janus_url or ""
        self.languages: dict[str, LanguageState] = {}
        self.original: Channel | None = None
        self.listeners: dict[str, str] = {}  # listener id -> language code or ORIGINAL
        self.asr: SourceASR | None = None
        self.speaker: Publisher | None = None
        self._speaker_session: JanusSession | None = None
        self._speaker_file: SpeakerFile | None = None
        self._monitor: asyncio.Task | None = None
        self._need: placement.TranslatorResources | None = None
        self.janus_restarts = 0  # recoveries begun (a failed one is retried and counted again)
        self.janus_recovered = 0  # recoveries that finished: layout re-created, speaker re-published
        self.started_at = time.time()
        self._next_listener = 0
        self._folder = self._made_folder = Path(tempfile.mkdtemp(prefix="rt-f2f-event-"))  # Janus's config and log

    # -- start-up -------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.config.input_file:  # checked before anything starts: a bad file is one line, nothing to tear down
            self._speaker_file = await asyncio.to_thread(
                open_speaker_file, self.config.input_file, self.config.input_loop
            )
        if self.config.janus_url is None:
            janus = JanusConfig(ice_interfaces=self.config.ice_interfaces, http_host=self.config.public_host)
            self.janus = JanusProcess(janus, self._folder / "janus")
            await self.janus.start()
            self.janus_url = self.janus.config.url
        else:
            await wait_ready(self.janus_url, 5.0)
        # mountpoints listen on Janus's own machine: where its URL points (forwarders and captions go there)
        self.sfu = EventSfu(self.janus_url, self.config.room, rtp_host=urlsplit(self.janus_url).hostname)
        await self.sfu.open()
        self.original = await self.sfu.add_channel(ORIGINAL)
        for code in self.config.targets:
            await self._offer(code, pinned=self.config.pin)
        await asyncio.to_thread(placement.connect, self.config.ray_address, self.config.ray_cpus)
        self._need = await asyncio.to_thread(placement.per_translator, self.config.translator_cpus)
        pinned = [c for c, s in self.languages.items() if s.pinned]
        placement.check_room(pinned, self._need)
        recogniser = await asyncio.to_thread(self._load_asr)
        self.asr = SourceASR(recogniser, self.config.source, self._fan_out, self._source_caption)
        if self.config.input_file:
            await self._publish_input()
        await self._tick()  # forward the speaker before anyone watches
        await self.asr.start(self.janus_url, self.original.mountpoint)
        for code in pinned:
            self._ensure_translator(self.languages[code])
        self._monitor = asyncio.create_task(self._monitor_loop(), name="event-monitor")

    def _load_asr(self) -> Any:
        from ..asr.whisper import load_whisper

        recogniser = load_whisper(self.config.asr_model)
        recogniser.check_language(self.config.source)
        return recogniser

    async def _publish_input(self) -> None:
        """``--input FILE``: play a recorded talk as the speaker, in real time, its own video when it has one."""
        if self._speaker_session is not None:  # a Janus restart: the old session died with it
            await self._speaker_session.close()
        if self.speaker is not None:  # its senders would go on pulling the file's tracks beside the new ones
            await self.speaker.pc.close()
        self._speaker_session = await JanusSession.create(self.janus_url)
        self.speaker = await publish(self._speaker_session, self.config.room, SPEAKER, self._speaker_file.tracks())

    # -- organiser API --------------------------------------------------------------------------------------------
    async def _offer(self, code: str, pinned: bool) -> LanguageState:
        channel = await self.sfu.add_channel(code)
        state = self.languages[code] = LanguageState(code, channel, pinned=pinned)
        return state

    async def add_language(self, code: str, pinned: bool = False) -> LanguageState:
        code = languages.validate(code)
        if code == self.config.source:
            raise LanguageError(f"'{code}' is the source language", "its listeners get the original")
        if code in self.languages:
            self.languages[code].pinned |= pinned
        else:
            _check_pair(self.config.source, code, self.config.mt_model)
            await self._offer(code, pinned)
        state = self.languages[code]
        if state.pinned:
            if state.actor is None:
                placement.check_room([code], self._need)
            self._ensure_translator(state)
        return state

    async def remove_language(self, code: str) -> None:
        state = self.languages.get(languages.validate(code))
        if state is None:
            raise LanguageError(f"'{code}' is not offered at this event", f"offered: {', '.join(self.languages)}")
        await self._stop_translator(state)
        for listener in list(state.listeners):
            self.listeners[listener] = ORIGINAL
        self.sfu.send_data(state.channel, {"type": "status", "state": "removed", "language": code,
                                           "text": "this language was removed: switch to another"})  # fmt: skip
        del self.languages[code]
        await self.sfu.remove_channel(code)

    def join(self, language: str) -> dict[str, Any]:
        """A listener arrives: which mountpoint to watch (and a translator starts if it is the first)."""
        if len(self.listeners) >= MAX_LISTENERS:
            raise RtF2fError(f"the event is full ({MAX_LISTENERS} listeners)", "try again later")
        code = ORIGINAL if language in (ORIGINAL, self.config.source) else languages.validate(language)
        if code != ORIGINAL and code not in self.languages:
            raise LanguageError(f"'{language}' is not offered at this event",
                                f"offered: {', '.join([self.config.source, *self.languages])}")  # fmt: skip
        self._next_listener += 1
        listener = f"l{self._next_listener}"
        self.listeners[listener] = code
        channel = self.original
        if code != ORIGINAL:
            state = self.languages[code]
            if state.actor is None:
                placement.check_room([code], self._need)
            state.listeners.add(listener)
            self._ensure_translator(state)
            channel = state.channel
        return {"listener": listener, "language": code, "mountpoint": channel.mountpoint, "janus": self.janus_url,
                "state": self.languages[code].state if code != ORIGINAL else "original"}  # fmt: skip

    async def leave(self, listener: str) -> None:
        code = self.listeners.pop(listener, None)
        state = self.languages.get(code) if code else None
        if state is None:
            return
        state.listeners.discard(listener)
        if not state.listeners and not state.pinned:
            await self._stop_translator(state)

    def status(self) -> dict[str, Any]:
        janus_cpu = process_cpu_seconds(self.janus.proc.pid) if self.janus and self.janus.alive else None
        return {
            "room": self.config.room, "source": self.config.source, "janus": self.janus_url,
            "janus_restarts": self.janus_restarts, "janus_recovered": self.janus_recovered, "janus_cpu_s": janus_cpu,
            "speaker": self.original.source if self.original else None,
            "original": {"mountpoint": self.original.mountpoint if self.original else None,
                         "listeners": sum(1 for c in self.listeners.values() if c == ORIGINAL)},
            "languages": {code: {
                "name": languages.name(code), "state": s.state, "pinned": s.pinned, "listeners": len(s.listeners),
                "mountpoint": s.channel.mountpoint, "carrying": s.channel.source, "failures": s.failures,
                "node": s.node, "delay_s": s.health.get("delay_s"), "clauses_out": s.health.get("clauses_out"),
                "clauses_dropped": s.health.get("clauses_dropped", 0) + s.clauses_lost, "note": s.note,
                "lipsync": s.health.get("lipsync"), "nice": s.health.get("nice"),
                "clock_skipped_s": s.health.get("clock_skipped_s"),
            } for code, s in self.languages.items()},
            "input": self._speaker_file.stats() if self._speaker_file else None,
            "asr": {"clauses": len(self.asr.clauses) if self.asr else 0,
                    "dropped_audio_s": round(self.asr.dropped_audio_s, 3) if self.asr else 0.0},
        }  # fmt: skip

    # -- translators ----------------------------------------------------------------------------------------------
    def _spec(self, state: LanguageState) -> WorkerSpec:
        return WorkerSpec(
            event_id=self.config.room, source=self.config.source, target=state.code, janus_url=self.janus_url,
            room=self.config.room, original_mountpoint=self.original.mountpoint, data_host=self.sfu.rtp_host,
            data_port=state.channel.data_port, mt_model=self.config.mt_model, tts_backend=self.config.tts_backend,
            checkpoint_path=self.config.checkpoint_path, lipsync_backend=self.config.lipsync_backend,
            niceness=this_thread_niceness(),
        )  # fmt: skip

    def _ensure_translator(self, state: LanguageState) -> None:
        if state.actor is None:
            state.actor = placement.spawn(self._spec(state), self._need, f"rtf2f-{self.config.room}-{state.code}")
            state.state = "starting"
        if state.feed_id is None and (state.starting is None or state.starting.done()):
            state.starting = asyncio.create_task(self._start_worker(state), name=f"start-{state.code}")

    async def _start_worker(self, state: LanguageState) -> None:
        actor = state.actor
        try:
            feed = await actor.start.remote()
            if state.actor is actor:
                state.feed_id = feed
                state.node = await actor.node.remote()
        except RtF2fError as exc:
            state.state, state.note = "error", str(exc)
        except Exception as exc:  # the actor died while starting; the monitor retries once Ray restarts it
            state.note = f"translator start failed: {type(exc).__name__}: {exc}"[:300]
            log.warning("%s: %s", state.code, state.note)
            if "RtF2fError" in repr(exc) or "LanguageError" in repr(exc) or "ModelMissingError" in repr(exc):
                state.state = "error"

    async def _stop_translator(self, state: LanguageState) -> None:
        actor, state.actor = state.actor, None
        _drop_probe(state)
        state.feed_id, state.state, state.health = None, "idle", {}
        if state.starting is not None:
            state.starting.cancel()
        if actor is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(actor.stop.remote(), 5.0)
            import ray

            ray.kill(actor, no_restart=True)
        await self._forward(state.channel, self.original.feed_id, SPEAKER)

    def _fan_out(self, item: SourceClause) -> None:
        for state in self.languages.values():
            if state.actor is None or state.state == "error":
                continue
            ref = state.actor.translate.remote(item)

            def lost(fut: Any, state: LanguageState = state) -> None:
                if fut.exception() is not None:
                    state.clauses_lost += 1

            ref.future().add_done_callback(lost)

    def _source_caption(self, message: dict) -> None:
        self.sfu.send_data(self.original, message)
        for state in self.languages.values():  # listeners hearing the original meanwhile read it too
            if state.channel.source == SPEAKER:
                self.sfu.send_data(state.channel, message)

    # -- the monitor ----------------------------------------------------------------------------------------------
    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self._tick()
            except JanusError as exc:
                log.warning("Janus: %s", exc)
                await self._recover_janus()
            except Exception:
                log.exception("event monitor tick failed")

    async def _tick(self) -> None:
        if self.janus is not None and not self.janus.alive:
            raise JanusError("Janus exited")
        feeds = await self._participants()
        speaker = feeds.get(SPEAKER)
        await self._forward(self.original, speaker, SPEAKER)
        checks = [self._check(s, feeds) for s in self.languages.values() if s.actor is not None]
        await asyncio.gather(*checks)
        for state in self.languages.values():
            live = state.state == "live" and state.feed_id is not None and state.feed_id in feeds.values()
            carrying = state.channel.source
            if live:
                await self._forward(state.channel, state.feed_id, f"tr-{state.code}")
            else:
                await self._forward(state.channel, speaker, SPEAKER)
            if carrying != state.channel.source and state.channel.source is not None:
                translated = state.channel.source != SPEAKER
                self.sfu.send_data(state.channel, {
                    "type": "status", "language": state.code, "state": "translated" if translated else "original",
                    "text": "" if translated else state.note or "translation is starting: you hear the original",
                })  # fmt: skip

    async def _check(self, state: LanguageState, feeds: dict[str, int]) -> None:
        """Read a translator's health: one call in flight at a time, waited for across ticks while it is slow."""
        if state.probe is None:
            state.probe = asyncio.wrap_future(state.actor.health.remote().future())
            state.probe_sent = time.monotonic()
        try:
            health = await asyncio.wait_for(asyncio.shield(state.probe), TICK_S)
        except Exception as exc:  # a timeout (slow, or hung), or Ray saying the worker's process died (it restarts it)
            if isinstance(exc, TimeoutError) and time.monotonic() - state.probe_sent < HUNG_AFTER_S:
                return  # slow, not hung: the next tick waits for the same answer
            _drop_probe(state)
            self._fail_over(state, exc)
            return
        state.probe, state.health = None, health
        waited = time.monotonic() - state.probe_sent
        if waited > SLOW_ANSWER_S:
            log.info("%s translator answered its health call in %.1f s (its event loop stalled up to %.1f s)",
                     state.code, waited, health.get("loop_lag_s", 0.0))  # fmt: skip
        if state.health.get("feed_id") is None:
            state.feed_id = None
            self._ensure_translator(state)  # a restarted actor: publish again
            return
        state.feed_id = state.health["feed_id"]
        if state.feed_id in feeds.values() and state.health.get("publishing"):
            state.state, state.note = "live", ""

    def _fail_over(self, state: LanguageState, exc: BaseException) -> None:
        """The channel carries the original until the translator answers again (counted once per live spell)."""
        if state.state == "live":  # a worker still loading its models is slow, not failed
            state.failures += 1
            state.note = f"the {languages.name(state.code)} translator stopped answering; you hear the original"
            log.warning("%s translator unhealthy (%s after %.1f s): failing over", state.code, type(exc).__name__,
                        time.monotonic() - state.probe_sent)  # fmt: skip
        state.state, state.feed_id = "failed-over", None

    async def _participants(self) -> dict[str, int]:
        reply = await self.sfu._room_handle.request({"request": "listparticipants", "room": self.config.room})
        return {p.get("display", ""): p["id"] for p in reply.get("participants", []) if p.get("publisher")}

    async def _forward(self, channel: Channel, feed: int | None, source: str) -> None:
        if feed is None:
            if channel.feed_id is not None:
                await self.sfu.unforward(channel)
            return
        await self.sfu.forward(channel, source, feed)

    async def _recover_janus(self) -> None:
        """Janus died or stopped answering: restart it (if ours), re-create the layout, re-publish everything."""
        self.janus_restarts += 1
        for state in self.languages.values():
            state.feed_id, state.state = None, "failed-over" if state.actor else state.state
        try:
            if self.janus is not None:
                await self.janus.restart()
            else:
                await wait_ready(self.janus_url, 5.0)
            await self.sfu.open()
            if self.config.input_file:
                await self._publish_input()
            await self._tick()
            await self.asr.start(self.janus_url, self.original.mountpoint)
            for state in self.languages.values():
                if state.actor is not None:
                    self._ensure_translator(state)
            self.janus_recovered += 1
        except (JanusError, RtF2fError) as exc:
            log.warning("Janus recovery failed (will retry): %s", exc)

    async def stop(self) -> None:
        """Tear down in order; each step is bounded so one stuck peer cannot hold the others (it is logged)."""
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
        steps: list[tuple[str, Any]] = [
            (f"translator {c}", self._stop_translator(s)) for c, s in self.languages.items()
        ]
        if self.asr is not None:
            steps.append(("source ASR", self.asr.stop()))
        if self.speaker is not None:
            steps.append(("speaker file", self.speaker.close()))
        if self._speaker_session is not None:
            steps.append(("speaker session", self._speaker_session.close()))
        if self.sfu is not None:
            steps.append(("Janus layout", self.sfu.close()))
        if self._speaker_file is not None:
            self._speaker_file.close()
        for name, step in steps:
            try:
                await asyncio.wait_for(step, STOP_STEP_S)
            except Exception as exc:  # stopping goes on whatever one part does
                log.warning("stopping the %s: %s", name, type(exc).__name__)
        if self.janus is not None:
            self.janus.stop()
        shutil.rmtree(self._made_folder, ignore_errors=True)  # only the folder this event made, once Janus is gone


def _drop_probe(state: LanguageState) -> None:
    """Forget the translator's pending health call (cancelling one that already finished does nothing)."""
    if state.probe is not None:
        state.probe.cancel()
        state.probe = None


def _check_pair(source: str, target: str, model: str | None) -> None:
    """Refuse a language no translation model here covers, before any worker is spent on it."""
    if model is not None:
        return
    from ..mt.apertium import mode_for
    from ..mt.select import available_pairs

    if mode_for(source, target) is not None:
        return
    if not any(o.ready and (o.source, o.target) == (source, target) for o in available_pairs()):
        from ..mt.select import _unsupported

        raise _unsupported(source, target)
