"""A real headless Firefox joins a call from the web page and talks to a Python participant, end to end.

Debian's ``firefox-esr`` (153 ESR) is driven through Marionette with ``marionette-driver`` (Mozilla's own client,
pure Python). Playwright drives only its own patched Firefox (a download, unreachable here) or, over WebDriver BiDi,
a Firefox newer than the ESR (it sends ``emulation.setMediaFeaturesOverride``, which 153 lacks); Selenium needs a
geckodriver binary, and PyPI has only unofficial, outdated copies of it.

Firefox's fake devices stand in for the camera (a moving colour pattern, 640x480 at 25 fps as the page asks) and the
microphone (a tone, set to 660 Hz so the other side can tell it from anything else); the Python participant sends a
320x240 test pattern at 15 fps and a 440 Hz tone. What is checked is what a person would notice: each side sees the
other at the size and rate sent and hears the other's tone; the page shows who is there and live numbers; leaving
(or closing the page) frees the server at once; the page explains a denied camera, a bad link, an unreachable server
and a server that takes only a codec Firefox lacks. A slow test plays real speech into Firefox's microphone through
PulseAudio and transcribes what the other side heard.

Firefox 153 ignores ``media.peerconnection.ice.loopback`` and offers only the addresses of real interfaces, so unlike
the Chromium tests these leave aiortc's gathering alone (no loopback patch): the machine needs a network interface
besides loopback (no internet).

Needs Debian ``firefox-esr`` (and ``pulseaudio``, ``pulseaudio-utils`` for the speech test) and ``marionette-driver``
from the ``test`` extra: scripts/test.sh installs them all.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_checks import dominant_frequency, loud_seconds, tone
from browser_fixtures import (
    EXAMPLE,
    python_participant,
    sentences_heard,
    served,
    transcribe,
    wait_or_explain,
    whisper,
)

from rt_f2f.audio import read_audio, write_wav
from rt_f2f.server.app import REGISTRY, ServerConfig
from rt_f2f.server.client import ArrayAudioTrack, create_room
from rt_f2f.server.limits import MediaSettings

pytestmark = pytest.mark.browser
__all__ = ["whisper"]  # a fixture

FIREFOX = Path("/usr/bin/firefox-esr")
FIREFOX_TONE_HZ = 660
BOT_TONE_HZ = 440
PREFS = {
    "media.navigator.streams.fake": True,  # built-in fake camera and microphone
    "media.navigator.audio.fake_frequency": FIREFOX_TONE_HZ,
    "media.navigator.permission.disabled": True,  # camera and microphone granted without a prompt
    "media.peerconnection.ice.obfuscate_host_addresses": False,  # plain addresses, not mDNS names
    "devtools.console.stdout.content": True,  # page errors and console lines go to the Gecko log
}
NO_H264 = {"media.gmp-gmpopenh264.enabled": False}  # as a Firefox that never fetched the plugin (none can be, here)
MESSAGE = "!document.querySelector('#message').hidden && document.querySelector('#message').textContent"
# Gecko prints uncaught page errors as "JavaScript error: URL, line N: message"
PAGE_ERROR = re.compile(r"^JavaScript error: (?P<url>\S+), line \d+: (?P<message>.*)$")


class FirefoxPage:
    """One headless Firefox window driven through Marionette.

    marionette-driver blocks on its socket, so every command runs in a worker thread: the server and the aiortc
    participant live on this test's event loop and must keep running while Firefox is being driven.
    """

    def __init__(self, marionette: Any, log: Path) -> None:
        self.m = marionette
        self.log = log

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def js(self, script: str, *args: Any) -> Any:
        """Run ``script`` (a function body; ``arguments`` holds ``args``) in the page itself, unsandboxed."""
        return await self.call(self.m.execute_script, script, script_args=list(args), sandbox=None)

    async def goto(self, url: str) -> None:
        await self.call(self.m.navigate, url)

    async def wait(self, expression: str, timeout: float, what: str) -> Any:
        """Poll a JavaScript expression in the page until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.js(f"return {expression};")
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: `{expression}` still {value!r} after {timeout} s")
            await asyncio.sleep(0.1)

    async def element(self, selector: str) -> Any:
        return await self.call(self.m.find_element, "css selector", selector)

    async def click(self, selector: str) -> None:
        await self.call((await self.element(selector)).click)

    async def fill(self, selector: str, text: str) -> None:
        element = await self.element(selector)
        await self.call(element.clear)
        await self.call(element.send_keys, text)

    async def select(self, selector: str, value: str) -> None:
        await self.click(f"{selector} option[value='{value}']")

    async def set_checked(self, selector: str, checked: bool) -> None:
        element = await self.element(selector)
        if await self.call(element.is_selected) != checked:
            await self.call(element.click)

    async def text(self, selector: str) -> str:
        return await self.js("return document.querySelector(arguments[0]).textContent;", selector)

    async def visible(self, selector: str) -> bool:
        return await self.js("const e = document.querySelector(arguments[0]); return !!e && !e.hidden;", selector)

    def errors(self, origin: str) -> list[str]:
        """Uncaught errors in pages from ``origin``, as Gecko logged them."""
        lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return [line for line in lines if (m := PAGE_ERROR.match(line)) and m["url"].startswith(origin)]


def not_here(reason: str) -> None:
    """Skip where Firefox or its driver is missing, but never in CI (CI installs both: a skip would hide that)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the Firefox tests")
    pytest.skip(reason)


@contextlib.contextmanager
def launched_firefox(folder: Path, prefs: dict[str, Any], env: dict[str, str] | None = None):
    """A headless Firefox with ``prefs`` (and ``env`` added to its environment): (Marionette client, Gecko log)."""
    if not FIREFOX.exists():
        not_here("Debian firefox-esr is not installed (apt-get install -y firefox-esr, or run scripts/test.sh as root)")
    try:
        from marionette_driver import marionette
    except ImportError:
        not_here("marionette-driver is not installed (pip install -e '.[test]')")
    import aioice.ice

    if not aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True):
        # Firefox 153 ignores media.peerconnection.ice.loopback: it only offers addresses of real interfaces
        pytest.fail("Firefox needs a network interface other than loopback to call the server (no internet needed)")
    log = folder / "gecko.log"
    with pytest.MonkeyPatch.context() as patch:  # Firefox takes a copy of this process's environment at launch
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        m = marionette.Marionette(port=0, bin=str(FIREFOX), headless=True, prefs=prefs, gecko_log=str(log))
    m.start_session()
    try:
        yield m, log
    finally:
        m.cleanup()
        m.instance = None  # its profile objects go now, not in a __del__ at interpreter exit (which fails loudly)


@pytest.fixture(scope="module")
def firefox_session(tmp_path_factory: pytest.TempPathFactory):
    """One headless Firefox with fake devices for the module (starting one takes seconds); tests open pages in it."""
    with launched_firefox(tmp_path_factory.mktemp("firefox"), PREFS) as session:
        yield session


@dataclass(frozen=True)
class VirtualMicrophone:
    """A PulseAudio null sink: what ``play`` plays into it, Firefox records from its monitor (the microphone)."""

    server: str  # PULSE_SERVER address of the PulseAudio process
    source: str  # the monitor's description, which Firefox's media.audio_loopback_dev names

    async def play(self, path: Path) -> None:
        """Play a sound file into the microphone, in real time."""
        process = await asyncio.create_subprocess_exec(
            "paplay", f"--server={self.server}", "--device=vmic", str(path), stderr=asyncio.subprocess.PIPE
        )
        _, error = await process.communicate()
        assert process.returncode == 0, f"paplay failed: {error.decode(errors='replace')}"


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory):
    """PulseAudio as a user process with two null sinks: "vmic" (the microphone) and "vspeaker" (the default out)."""
    if not (shutil.which("pulseaudio") and shutil.which("paplay")):
        not_here("PulseAudio is not installed (apt-get install -y pulseaudio pulseaudio-utils)")
    folder = tmp_path_factory.mktemp("pulse")
    socket, config = folder / "native", folder / "default.pa"
    config.write_text(
        f"load-module module-native-protocol-unix socket={socket} auth-anonymous=1\n"
        "load-module module-null-sink sink_name=vspeaker sink_properties=device.description=vspeaker\n"
        "load-module module-null-sink sink_name=vmic sink_properties=device.description=vmic\n"
        "set-default-sink vspeaker\n"
    )
    command = ["pulseaudio", "-n", "-F", str(config), "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no"]
    env = {**os.environ, "HOME": str(folder), "XDG_RUNTIME_DIR": str(folder)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"PulseAudio did not start: {process.communicate()[1].decode(errors='replace')[-2000:]}")
            time.sleep(0.05)
        yield VirtualMicrophone(f"unix:{socket}", "Monitor of vmic")
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def firefox_with_microphone(tmp_path_factory: pytest.TempPathFactory, microphone: VirtualMicrophone):
    """Firefox with the fake camera and the PulseAudio microphone (how Mozilla's own WebRTC tests get real sound)."""
    prefs = {**PREFS, "media.audio_loopback_dev": microphone.source}
    with launched_firefox(tmp_path_factory.mktemp("firefox-mic"), prefs, {"PULSE_SERVER": microphone.server}) as s:
        yield s


@contextlib.asynccontextmanager
async def firefox(firefox_session, prefs: dict[str, Any] | None = None) -> AsyncIterator[FirefoxPage]:
    """The shared Firefox on a blank page, with ``prefs`` set for the block."""
    m, log = firefox_session
    page = FirefoxPage(m, log)
    await page.goto("about:blank")
    with m.using_prefs(prefs or {}):
        try:
            yield page
        finally:
            await page.goto("about:blank")  # closes the call, if the page had one


async def join_from_page(page: FirefoxPage, join_url: str, language: str) -> None:
    await page.goto(join_url)
    await page.wait("!document.querySelector('#join-form').hidden", 10, "the join form")
    await page.fill("#name", "Ada")
    await page.select("#speak", language)
    await page.select("#hear", language)
    await page.set_checked("#voice-processing", False)  # a pure tone: no noise suppression
    await page.click("#join")
    await page.wait("document.body.dataset.joined", 15, "joined")


# Records what the remote tile receives (its audio track, as Firefox decodes it) with MediaRecorder: Web Audio would
# need a click first (Firefox's autoplay rules), a recorder does not.
RECORD_START = """
const stream = new MediaStream(document.querySelector(arguments[0]).srcObject.getAudioTracks());
const recorder = new MediaRecorder(stream);
const chunks = [];
recorder.ondataavailable = (e) => chunks.push(e.data);
recorder.start();
window.__recording = { recorder, chunks };
"""
RECORD_STOP = """
const [resolve] = arguments;
const { recorder, chunks } = window.__recording;
recorder.onstop = async () => {
  const bytes = new Uint8Array(await new Blob(chunks).arrayBuffer());
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  resolve(btoa(text));
};
recorder.stop();
"""
PLAYING = "(v => !v.paused && !v.muted && v.volume > 0 && v.currentTime > 1)(document.querySelector(arguments[0]))"


async def recorded_audio(page: FirefoxPage, folder: Path) -> np.ndarray:
    """Stop the recording started by RECORD_START; its audio, mono at 48 kHz."""
    encoded = await page.call(page.m.execute_async_script, RECORD_STOP, sandbox=None)
    path = folder / "firefox-heard.ogg"
    path.write_bytes(base64.b64decode(encoded))
    return read_audio(path, 48000)


async def test_firefox_and_python_participant_see_and_hear_each_other(firefox_session, tmp_path: Path):
    async with asyncio.timeout(110), served() as (app, base):
        room = await create_room(base)
        bot = python_participant(
            base, room, "en", (320, 240, 15), ArrayAudioTrack(tone(BOT_TONE_HZ, 1.0, 48000), 48000, loop=True)
        )
        await bot.join()
        try:
            async with firefox(firefox_session) as page:
                started = time.monotonic()
                await join_from_page(page, room["join_url"], "en")
                join_s = time.monotonic() - started
                await wait_or_explain(bot, lambda: bot.roster() and bot.roster()["participants"], 10, "Ada's roster")
                ada = bot.roster()["participants"][0]
                assert ada["name"] == "Ada" and ada["mode"] == "passthrough"
                slot = bot.slots[ada["slot"]]
                # the page shows the bot's tile (the roster came over the data channel), playing the bot's video
                tile = ".tile.remote:not([hidden])"
                await page.wait(f"document.querySelectorAll('{tile}').length === 1", 10, "the bot's tile")
                assert await page.text(f"{tile} .who") == "Bot"
                size = await page.wait(
                    f"(v => v.videoWidth && [v.videoWidth, v.videoHeight])(document.querySelector('{tile} video'))",
                    10,
                    "the bot's video playing",
                )
                assert size == [320, 240]
                await page.js(RECORD_START, f"{tile} video")
                await asyncio.sleep(4.0)
                # Firefox receives the bot's tone, and the tile plays it (autoplay, sound on)
                heard = await recorded_audio(page, tmp_path)
                heard_hz = dominant_frequency(heard, 48000)
                # (most of it: on a busy CPU the server drops audio that a listener falls behind on, by design)
                assert loud_seconds(heard) >= 2.0 and abs(heard_hz - BOT_TONE_HZ) < 5, (loud_seconds(heard), heard_hz)
                assert await page.js(f"return {PLAYING};", f"{tile} video")
                assert await page.visible("#message") is False
                # the stats overlay shows live numbers for the bot's tile and for what Firefox sends
                stats = await page.text(f"{tile} .stats")
                assert re.search(r"delay ≈ \d+\.\d\d s", stats), stats
                assert re.search(r"\b\d+ fps 320×240", stats), stats
                assert re.search(r"video \d+ kbps", stats) and re.search(r"audio \d+ kbps", stats), stats
                local = await page.text("#local-stats")
                assert re.search(r"sending \d+ fps \d+×\d+", local), local  # its encoder may scale down on a busy CPU
                # the bot receives Firefox's camera at its size and rate, and its tone
                # (a busy CPU may make Firefox's encoder scale down for a while, as it would for any user)
                assert (640, 480) in {(w, h) for _, w, h in slot.video}, {(w, h) for _, w, h in slot.video}
                # asked for at 25 fps: with other work on the 2 cores here the server (a decode and an encode) and
                # the bot (a decode) keep ~12-25 of them once running; a starved bitrate or a stalled track leaves a
                # few or none. On a loaded machine the first seconds can be much slower (2.7 fps, issue 15, with
                # the cores loaded, while Firefox's encoder and this process's decoders catch up),
                # so the floor is asked of any 3 s window within 20 s rather than of the first one.
                measured: list[tuple[float, float, float]] = []

                def camera_and_tone_flow() -> bool:
                    now = time.monotonic()
                    fps = sum(1 for t, _, _ in slot.video if t > now - 3.0) / 3.0
                    audio = slot.audio_samples_array()[-3 * 48000 :]
                    measured.append((fps, loud_seconds(audio), dominant_frequency(audio, 48000)))
                    fps, loud, hz = measured[-1]
                    return fps >= 8 and loud >= 1.5 and abs(hz - FIREFOX_TONE_HZ) < 5

                try:
                    await bot.wait_for(camera_and_tone_flow, 20, poll=0.5)
                except TimeoutError:
                    best = max(measured)
                    raise AssertionError(
                        f"Firefox's camera and tone never reached 8 fps and 1.5 loud s of {FIREFOX_TONE_HZ} Hz in a "
                        f"3 s window within 20 s: best (fps, loud s, Hz) {best}; Firefox says {local!r}"
                    ) from None
                fps, _, bot_hz = measured[-1]
                assert page.errors(base) == []
                print(f"join {join_s:.2f} s; camera at the bot {fps:.1f} fps; bot hears {bot_hz:.0f} Hz; "
                      f"Firefox hears {heard_hz:.0f} Hz; {stats!r}; {local!r}")  # fmt: skip
                # leaving from the page frees the server at once
                await page.click("#leave")
                await bot.wait_for(lambda: bot.roster()["participants"] == [], 5)
                assert app[REGISTRY].participant_count == 1
                assert not await page.visible("#local-tile") and await page.visible("#join")
                # and so does closing the page (a beacon on pagehide), well before the server's idle timeout
                await page.click("#join")
                await page.wait("document.body.dataset.joined", 15, "joined again")
                await wait_or_explain(bot, lambda: bot.roster()["participants"] != [], 10, "Ada back")
                closed = time.monotonic()
                await page.goto("about:blank")
                await bot.wait_for(lambda: bot.roster()["participants"] == [], 5)
                print(f"server freed {time.monotonic() - closed:.2f} s after the page closed")
                assert app[REGISTRY].participant_count == 1
        finally:
            await bot.close()


async def test_firefox_page_explains_denied_camera_bad_link_and_unreachable_server(firefox_session):
    async with asyncio.timeout(60), served() as (_, base):
        room = await create_room(base)
        # nobody may use the camera or microphone: Firefox refuses them without a prompt
        denied = {
            "media.navigator.permission.disabled": False,
            "permissions.default.camera": 2,
            "permissions.default.microphone": 2,
        }
        async with firefox(firefox_session, denied) as page:
            await page.goto(room["join_url"])
            await page.wait("!document.querySelector('#join-form').hidden", 10, "the join form")
            await page.click("#join")
            message = await page.wait(MESSAGE, 10, "a message")
            assert "denied" in message.lower(), message
            assert not await page.js("return document.body.dataset.joined === '1';")
        async with firefox(firefox_session) as page:
            # a link with a wrong token
            await page.goto(f"{base}/#room={room['id']}&token=wrong")
            message = await page.wait(MESSAGE, 10, "a message")
            assert "link" in message.lower(), message
            assert page.errors(base) == []
    # a server that takes only H.264 video, and a Firefox without it (no OpenH264 plugin): the page says what to do
    h264 = ServerConfig(media=MediaSettings(video_codec="h264"))
    async with served(config=h264) as (app, base), firefox(firefox_session, NO_H264) as page:
        room = await create_room(base)
        await page.goto(room["join_url"])
        await page.wait("!document.querySelector('#join-form').hidden", 10, "the join form")
        await page.click("#join")
        message = await page.wait(MESSAGE, 10, "a message")
        assert "H.264" in message and "OpenH264" in message, message
        assert not await page.visible("#local-tile")  # the camera was not even opened
        assert app[REGISTRY].participant_count == 0
    # the page loaded, then its server went away: joining says so
    async with firefox(firefox_session) as page:
        async with served() as (_, gone):
            room = await create_room(gone)
            await page.goto(room["join_url"])
            await page.wait("!document.querySelector('#join-form').hidden", 10, "the join form")
        await page.click("#join")
        message = await page.wait(MESSAGE, 10, "a message")
        assert "unreachable" in message.lower(), message
        assert page.errors(gone) == []


@pytest.mark.slow  # ~25 s: a second Firefox, real-time playback, Whisper
async def test_firefox_microphone_carries_real_speech(firefox_with_microphone, microphone, whisper, tmp_path: Path):
    """English speech played into PulseAudio reaches the other participant through Firefox's microphone, as speech.

    The whole three-sentence sample is played and Whisper must hear at least five words of two of its sentences. With
    one sentence alone, a busy-core CI run once failed: the bot heard 0.8 s of its 2.6 s ("This young man."), its
    start lost on the way through a starved Firefox, PulseAudio and this process (server and bot on one loop), not in
    anything rt-f2f decides. One glitch may now take one sentence; the mic must still carry the other two."""
    sample = read_audio(EXAMPLE, 48000)
    sample_loud = loud_seconds(sample)
    speech = tmp_path / "sample.wav"
    write_wav(speech, sample, 48000)
    async with asyncio.timeout(120), served() as (_, base):
        room = await create_room(base)
        bot = python_participant(base, room, "en", (160, 120, 10))
        await bot.join()
        try:
            async with firefox(firefox_with_microphone) as page:
                await join_from_page(page, room["join_url"], "en")
                await wait_or_explain(bot, lambda: bot.roster() and bot.roster()["participants"], 10, "Ada's roster")
                slot = bot.slots[bot.roster()["participants"][0]["slot"]]
                label = "return document.querySelector('#local-video').srcObject.getAudioTracks()[0].label;"
                assert await page.js(label) == microphone.source
                # Firefox's audio must be flowing (silence at first) before the speech plays: on a busy machine
                # the data channel can be up seconds before the first RTP audio reaches the bot
                await wait_or_explain(bot, lambda: slot.audio_samples_array().size > 0, 20, "Firefox's audio")
                await microphone.play(speech)
                # the last words are still on their way: wait until the bot has heard most of the sample
                with contextlib.suppress(AssertionError):
                    await wait_or_explain(
                        bot, lambda: loud_seconds(slot.audio_samples_array()) >= 0.6 * sample_loud, 10, "speech"
                    )
                heard = slot.audio_samples_array()
                text, language, _ = await asyncio.to_thread(transcribe, whisper, heard)
                print(f"the bot heard {loud_seconds(heard):.1f} s of sound of {sample_loud:.1f} s: {text!r}")
                assert language == "en" and len(sentences_heard(text)) >= 2, (language, text)
                assert page.errors(base) == []
        finally:
            await bot.close()
