"""Mouth-to-ear delay from one browser's microphone to another browser's speaker, through the whole call path.

The speaker is a headless Chromium whose fake microphone plays LibriVox English sentences, each followed by a long
silence (Chromium loops the file). Two listeners sit in a second Chromium (fake microphone: silence): one hears
Portuguese (the speech engine translates), one hears English (passthrough: capture, Opus, network, the server's
jitter buffer, decode and playout: the baseline, in the same run). All three join from the real web page
(``web/``), served by the call server running in this process.

Both browsers are measured from inside the page, on the one wall clock they share: a script added before the
page loads taps every microphone track ``getUserMedia`` returns and every remote audio track the peer connection
receives, and logs each 20 ms frame's loudness with its time (``performance.timeOrigin + performance.now()``).
The *mouth* time of a sentence is when its first voiced frame left the speaker's microphone; the *ear* time is
the first loud frame a listener received after it (and before the next sentence). So the figure includes Opus,
both WebRTC legs, the server and, for the translated listener, the speech engine.

    python -m benchmarks.bench_webrtc_browser --out browser.json [--sentences 3] [--gap 30] [--target pt]

Needs Debian ``chromium`` and ``playwright`` (the ``test`` extra), like the browser tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_webrtc import (
    EXAMPLE_CLIPS,
    ON_RMS,
    add_figures,
    delay_summary,
    first_heard,
    load_sentences,
    loopback_ice,
    print_summary,
)
from benchmarks.common import BenchContext, Suite, SuiteResult, skipped

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
]  # headless Debian Chromium for WebRTC over loopback (the browser tests use these too)
FAKE_DEVICES = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
MIC_RATE = 48000
LEAD_IN_S = 6.0  # silence before the first sentence, so every page has joined when it plays

# Runs in every page before its own scripts. Loudness per 20 ms frame, per audio track, with wall-clock times.
TAP_SCRIPT = """
(() => {
  const log = (window.__levels = {});
  const said = (window.__messages = []);
  let ctx = null;
  const keep = [];
  function tap(track, kind) {
    if (track.kind !== "audio" || log[track.id]) return;
    ctx = ctx || new AudioContext();
    const entry = (log[track.id] = { kind, t: [], rms: [] });
    const stream = new MediaStream([track]);
    if (kind === "remote") {
      // Chromium feeds remote WebRTC audio into Web Audio only while a media element plays it.
      const el = new Audio();
      el.muted = true;
      el.srcObject = stream;
      el.play().catch(() => {});
      keep.push(el);
    }
    const src = ctx.createMediaStreamSource(stream);
    const proc = ctx.createScriptProcessor(1024, 1, 1);
    const frame = Math.round(ctx.sampleRate / 50);
    let acc = 0, n = 0, frameStart = null;
    proc.onaudioprocess = (e) => {
      const x = e.inputBuffer.getChannelData(0);
      const end = performance.timeOrigin + performance.now();
      const t0 = end - (x.length / ctx.sampleRate) * 1000;
      for (let i = 0; i < x.length; i++) {
        if (n === 0) frameStart = t0 + (i / ctx.sampleRate) * 1000;
        acc += x[i] * x[i];
        if (++n === frame) {
          entry.t.push(frameStart / 1000);
          entry.rms.push(Math.sqrt(acc / n));
          acc = 0;
          n = 0;
        }
      }
    };
    src.connect(proc);
    proc.connect(ctx.destination);
    keep.push(src, proc);
  }
  const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await gum(constraints);
    for (const track of stream.getAudioTracks()) tap(track, "local");
    return stream;
  };
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = function (...args) {
    const pc = new Native(...args);
    pc.addEventListener("track", (e) => tap(e.track, "remote"));
    const create = pc.createDataChannel.bind(pc);
    pc.createDataChannel = (...args) => {
      const channel = create(...args);
      channel.addEventListener("message", (e) => {
        const msg = JSON.parse(e.data);
        if ((msg.type === "caption" && msg.final) || msg.type === "status") said.push(msg);
        if (msg.type === "stats") window.__stats = msg;
      });
      return channel;
    };
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();
"""


@dataclass
class Levels:
    """One audio track's loudness: frame start times (wall clock, s) and RMS."""

    t: np.ndarray
    rms: np.ndarray

    @classmethod
    def of(cls, samples: np.ndarray, rate: int, t0: float = 0.0) -> Levels:
        """The same measure over a recording: 20 ms frames from ``t0``."""
        frame = rate // 50
        n = samples.size // frame
        rms = np.sqrt(np.mean(samples[: n * frame].reshape(n, frame) ** 2, axis=1))
        return cls(t0 + np.arange(n) * 0.02, rms)

    def onsets(self, quiet_s: float = 0.5) -> np.ndarray:
        """Times where sound starts after at least ``quiet_s`` of silence."""
        loud = np.flatnonzero(self.rms > ON_RMS)
        if loud.size == 0:
            return np.zeros(0)
        times = self.t[loud]
        starts = np.concatenate([[True], np.diff(times) > quiet_s])
        return times[starts]


def speaker_wav(path: Path, sentences: list[np.ndarray], rate: int, gap_s: float) -> list[float]:
    """The speaker's microphone file; returns where each sentence starts in it."""
    from rt_f2f.audio import resample, write_wav

    parts = [np.zeros(int(LEAD_IN_S * MIC_RATE), np.float32)]
    starts = []
    for audio in sentences:
        starts.append(sum(p.size for p in parts) / MIC_RATE)
        parts += [resample(audio, rate, MIC_RATE), np.zeros(int(gap_s * MIC_RATE), np.float32)]
    write_wav(path, np.concatenate(parts), MIC_RATE)
    return starts


@contextlib.asynccontextmanager
async def chromium(playwright, microphone: Path) -> AsyncIterator[Any]:
    browser = await playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=[*FLAGS, *FAKE_DEVICES, f"--use-file-for-fake-audio-capture={microphone}"]
    )
    try:
        yield browser
    finally:
        await browser.close()


async def join(browser, join_url: str, name: str, speak: str, hear: str):
    page = await browser.new_page()
    await page.add_init_script(TAP_SCRIPT)
    await page.goto(join_url)
    await page.wait_for_selector("#join-form:not([hidden])", timeout=15_000)
    await page.fill("#name", name)
    await page.select_option("#speak", speak)
    await page.select_option("#hear", hear)
    await page.select_option("#camera", "none")  # audio is what is measured; video would only load the CPU
    await page.click("#join")
    await page.wait_for_selector("body[data-joined]", timeout=30_000)
    return page


async def levels(page, kind: str) -> list[Levels]:
    raw = await page.evaluate("window.__levels")
    return [Levels(np.asarray(v["t"]), np.asarray(v["rms"])) for v in raw.values() if v["kind"] == kind]


async def measure(clips: list[str], target: str, gap_s: float, voice_conversion: bool) -> dict[str, Any]:
    # The browsers offer 127.0.0.1 (--allow-loopback-in-peer-connection); aioice skips it unless told.
    with loopback_ice():
        return await _measure(clips, target, gap_s, voice_conversion)


async def _measure(clips: list[str], target: str, gap_s: float, voice_conversion: bool) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from rt_f2f.server.app import ServerConfig, create_app, serve_locally
    from rt_f2f.server.client import create_room
    from rt_f2f.server.feeds.engine import speech_engine_factory
    from rt_f2f.server.feeds.factory import default_feed_factory

    if not CHROMIUM.exists():
        raise SystemExit("Debian chromium is not installed: apt-get install -y chromium")
    sentences = load_sentences(clips)
    engines = speech_engine_factory(voice_conversion)
    print(f"loading the en->{target} models...", flush=True)
    await asyncio.to_thread(engines("en", target).load)  # once, before anyone speaks (the server shares them)
    app = create_app(ServerConfig(), default_feed_factory(engines))
    runner, base = await serve_locally(app)
    with tempfile.TemporaryDirectory() as tmp:
        speech_mic, silent_mic = Path(tmp) / "speech.wav", Path(tmp) / "silence.wav"
        starts = speaker_wav(speech_mic, [s.audio for s in sentences], 16000, gap_s)
        from rt_f2f.audio import write_wav

        write_wav(silent_mic, np.zeros(MIC_RATE, np.float32), MIC_RATE)
        room = await create_room(base)
        try:
            async with async_playwright() as p, chromium(p, silent_mic) as ears, chromium(p, speech_mic) as mouth:
                translated = await join(ears, room["join_url"], "translated", "en", target)
                direct = await join(ears, room["join_url"], "direct", "en", "en")
                t0 = time.monotonic()
                speaker = await join(mouth, room["join_url"], "speaker", "en", "en")
                join_s = time.monotonic() - t0
                listen_s = LEAD_IN_S + sum(s.audio.size / 16000 + gap_s for s in sentences)
                print(f"joined in {join_s:.2f} s; listening for {listen_s:.0f} s", flush=True)
                await asyncio.sleep(listen_s)
                mic = await levels(speaker, "local")
                heard = {
                    "translated": await levels(translated, "remote"),
                    "passthrough": await levels(direct, "remote"),
                }
                said = await translated.evaluate("window.__messages")
                stats = await translated.evaluate("window.__stats || null")
        finally:
            await runner.cleanup()
    if not mic:
        raise RuntimeError("the speaker page captured no microphone audio")
    # The first pass through the file only: one mouth time per sentence, from the file's own layout
    mouths = list(mic[0].onsets(quiet_s=gap_s / 2)[: len(sentences)])
    if len(mouths) < len(sentences):
        raise RuntimeError(
            f"the speaker's microphone played {len(mouths)} of {len(sentences)} sentences: is the CPU too busy?"
        )
    out: dict[str, Any] = {
        "sentences": [s.clip for s in sentences],
        "gap_s": gap_s,
        "join_s": join_s,
        "mouth_times_in_file_s": starts,
        "captions": [f"{m['language']}: {m['text']}" for m in said if m["type"] == "caption"],
        "engine_status": [f"{m['state']} {m.get('detail', '')}".strip() for m in said if m["type"] == "status"],
        "server_stats": stats,
    }
    for name, tracks in heard.items():
        found = np.sort(np.concatenate([t.onsets() for t in tracks])) if tracks else np.zeros(0)
        times = first_heard(found, mouths)
        out[name] = delay_summary([None if t is None else t - m for t, m in zip(times, mouths, strict=True)])
    return out


def run_suite(ctx: BenchContext) -> SuiteResult:
    if not CHROMIUM.exists():
        return skipped("webrtc-browser", "Debian chromium is not installed (apt-get install -y chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return skipped("webrtc-browser", "playwright is not installed (pip install -e '.[test]')")
    clips = list(EXAMPLE_CLIPS[: 1 if ctx.quick else 3])
    gap = 45.0
    result = SuiteResult(suite="webrtc-browser", settings={"sentences": clips, "target": "pt", "gap_s": gap})
    ctx.progress(f"webrtc-browser: {len(clips)} sentence(s), about {len(clips) * (gap + 5) + 30:.0f} s")
    summary = asyncio.run(measure(clips, "pt", gap, voice_conversion=True))
    add_figures(result, summary, " (browser to browser)")
    result.add("page join (goto -> joined)", summary["join_s"], "s", 1)
    if summary["passthrough"]["p50_s"] is None:
        result.status, result.reason = "failed", "no audio reached the listening browser"
    return result


SUITE = Suite(
    "webrtc-browser",
    "mouth-to-ear from one browser's microphone to another browser, translated vs passthrough",
    run_suite,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--sentences", type=int, default=3, help=f"LibriVox sentences (max {len(EXAMPLE_CLIPS)})")
    parser.add_argument("--gap", type=float, default=30.0, help="seconds of silence after each sentence")
    parser.add_argument("--target", default="pt", help="the translated listener's language")
    parser.add_argument("--no-voice-conversion", action="store_true")
    args = parser.parse_args(argv)
    clips = list(EXAMPLE_CLIPS[: max(1, min(args.sentences, len(EXAMPLE_CLIPS)))])
    summary = asyncio.run(measure(clips, args.target, args.gap, not args.no_voice_conversion))
    print_summary(summary, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
