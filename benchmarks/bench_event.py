"""Live-event benchmark: listeners 1/10/30/100 through Janus; join time, mouth-to-ear per language, server CPU.

Runs ``rt-f2f event start`` (without --input) as a child process inside a network namespace (root only: Janus
ignores loopback for ICE), and plays the speaker from this process, published into the event's room as the speaker
exactly as the speaker page does: a recorded English talk cut at its pauses into phrases, each phrase at the start
of its own ``--slot`` seconds, the whole looped. So this process knows when every phrase's first and last word
were spoken. Listeners (aiortc, audio only, round-robin over the channels, translated ones first; the first of
each channel is its probe) are added in steps; at each step it measures:
- join time: POST /api/event/listeners -> WebRTC connected to the mountpoint (p50, p95, max);
- mouth-to-ear per channel and phrase: the first sound a probe listener of that channel hears after a silence,
  within the phrase's slot, minus when the phrase's first word left the speaker (original: passthrough;
  translated: the ear-voice span of the translation, start to start), and the same minus the phrase's last word
  (how long after the speaker finished a phrase its translation begins). A phrase whose translation starts later
  than its slot ends (a backlog) is counted as missed, not measured;
- CPU, as a share of one core: the event's Python process (with its local Ray's translators excluded: they are
  separate processes, reported apart) and Janus.

    sudo python -m benchmarks.bench_event --levels 1,10,30 --targets pt --out /tmp/bench_event.json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TALK = ROOT / "examples" / "en_sample.wav"
SILENCE_GAP_S = 2.0  # the quiet before a sound that counts as a phrase's (translation's) onset
PAUSE_S = 0.25  # a pause this long in the talk ends a phrase
LEAD_S = 0.5  # silence before each phrase in its slot
LOUD = 0.02
SLOT_S = 12.0


def phrases(talk: np.ndarray, rate: int) -> list[tuple[int, int]]:
    """(start, end) sample indices of the talk's phrases: sound separated by pauses of PAUSE_S or more."""
    block = rate // 50
    loud = [np.abs(talk[i : i + block]).max(initial=0) > LOUD for i in range(0, talk.size, block)]
    out: list[tuple[int, int]] = []
    for i, on in enumerate(loud):
        if not on:
            continue
        if out and (i * block - out[-1][1]) < PAUSE_S * rate:
            out[-1] = (out[-1][0], (i + 1) * block)
        else:
            out.append((i * block, (i + 1) * block))
    return out


def spaced_talk(talk: np.ndarray, rate: int, slot_s: float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The talk with each phrase at the start of its own slot: the clip, and each phrase's (first, last word) time
    in it (s). Silence after a phrase lets its translation be told apart from the next one's at the ear."""
    slot = int(slot_s * rate)
    parts, marks = [], []
    for k, (a, b) in enumerate(phrases(talk, rate)):
        if b - a + int((LEAD_S + SILENCE_GAP_S + 1.0) * rate) > slot:
            raise SystemExit(f"bench_event: a {(b - a) / rate:.1f} s phrase does not fit a {slot_s:g} s slot: "
                             "raise --slot")  # fmt: skip
        piece = np.zeros(slot, np.float32)
        lead = int(LEAD_S * rate)
        piece[lead : lead + b - a] = talk[a:b]
        parts.append(piece)
        marks.append((k * slot_s + LEAD_S, k * slot_s + LEAD_S + (b - a) / rate))
    return np.concatenate(parts), marks


def mouth_to_ear(onsets: list[float], spoken: list[tuple[float, float]], slot_s: float) -> dict[str, list[float]]:
    """Per phrase spoken at wall times (first, last word): the first onset heard within its slot, minus each."""
    out: dict[str, list[float]] = {"from_first_word_s": [], "from_last_word_s": [], "missed": []}
    for first, last in spoken:
        heard = [o for o in onsets if first + 0.05 < o < first - LEAD_S + slot_s]
        if heard:
            out["from_first_word_s"].append(heard[0] - first)
            out["from_last_word_s"].append(heard[0] - last)
        else:
            out["missed"].append(first)
    return out


def _children(pid: int) -> dict[str, list[int]]:
    """Descendant pids of ``pid`` by command name (janus, ray::TranslatorActor, ...)."""
    by_parent: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        by_parent.setdefault(ppid, []).append(int(entry.name))
        names[int(entry.name)] = cmd
    out: dict[str, list[int]] = {}
    stack = [pid]
    while stack:
        for child in by_parent.get(stack.pop(), []):
            out.setdefault(Path(names[child]).name, []).append(child)
            stack.append(child)
    return out


def _cpu(pids: list[int]) -> float:
    from rt_f2f.event.janus_process import process_cpu_seconds

    return sum(process_cpu_seconds(p) or 0.0 for p in pids)


def first_sounds(reception, after: float, threshold: float = LOUD) -> list[float]:  # noqa: ANN001 - rtc.Reception
    """Wall times when sound starts after at least SILENCE_GAP_S of quiet (20 ms blocks as they arrived)."""
    out, quiet_since = [], None
    for block, wall in zip(reception.audio, reception.audio_arrival, strict=True):
        if wall < after:
            continue
        if np.abs(block).max(initial=0) <= threshold:
            quiet_since = wall if quiet_since is None else quiet_since
        elif quiet_since is not None and wall - quiet_since >= SILENCE_GAP_S:
            out.append(wall)
            quiet_since = None
        else:
            quiet_since = None
    return out


async def run(levels: list[int], targets: list[str], slot: float, out: Path, tts: str | None = None) -> dict:
    import aiohttp

    from rt_f2f.audio import read_audio
    from rt_f2f.event.janus_client import JanusSession
    from rt_f2f.event.janus_process import free_port
    from rt_f2f.event.netns import INTERFACE
    from rt_f2f.event.rtc import Watcher, publish
    from rt_f2f.server.client import ArrayAudioTrack, PatternVideoTrack

    port = free_port()
    cmd = [sys.executable, "-m", "rt_f2f", "event", "start", "--source", "en", "--targets", ",".join(targets),
           "--pin", "--ice-interface", INTERFACE, "--port", str(port), "--duration", "3600"]  # fmt: skip
    if tts:
        cmd += ["--tts", tts]
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    results: dict = {"levels": [], "targets": targets, "tts": tts or "default", "slot_s": slot,
                     "load_avg_start": os.getloadavg()}  # fmt: skip
    try:
        while "listener link" not in (line := server.stdout.readline()):
            if not line:
                raise RuntimeError("the event command exited")
        # read its output all along (its actors' logs come through it): a full pipe would block the event command
        threading.Thread(target=collections.deque, args=(server.stdout, 0), daemon=True).start()  # reads, keeps none
        async with aiohttp.ClientSession() as http:
            status = await (await http.get(base + "/api/event")).json()
            room, janus = status["room"], status["janus"]
            clip, marks = spaced_talk(read_audio(TALK, 48000), 48000, slot)
            period = clip.size / 48000
            results["phrases_s"] = marks
            speaker_session = await JanusSession.create(janus)
            track = ArrayAudioTrack(clip, 48000, loop=True)
            await publish(speaker_session, room, "speaker", [track, PatternVideoTrack(320, 240, 15)])
            # wait until every translator is live (they load their models first)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                langs = (await (await http.get(base + "/api/event")).json())["languages"]
                if all(v["state"] == "live" for v in langs.values()):
                    break
                await asyncio.sleep(1)
            # translated channels first: with fewer listeners than channels, those are the ones measured
            channels = [*targets, "original"]
            listeners: list[tuple[str, Watcher, JanusSession]] = []
            session = await JanusSession.create(janus)  # listeners share one Janus session (one long-poll)
            for level in levels:
                joins = []
                while len(listeners) < level:
                    lang = channels[len(listeners) % len(channels)]
                    t0 = time.monotonic()
                    info = await (await http.post(base + "/api/event/listeners", json={"language": lang})).json()
                    watcher = Watcher(session, keep_audio=len(listeners) < len(channels), video=False)
                    await watcher.watch(info["mountpoint"])
                    joins.append(time.monotonic() - t0)
                    listeners.append((lang, watcher, session))
                procs = _children(server.pid)
                janus_pids = procs.get("janus", [])
                actor_pids = [p for name, ps in procs.items() if "TranslatorActor" in name for p in ps]
                c_server, c_janus, c_actors = _cpu([server.pid]), _cpu(janus_pids), _cpu(actor_pids)
                t0, w0 = time.monotonic(), time.time()
                await asyncio.sleep(period * 2)
                wall = time.monotonic() - t0
                row = {
                    "listeners": len(listeners),
                    "join_s": {"p50": float(np.percentile(joins, 50)), "p95": float(np.percentile(joins, 95)),
                               "max": float(max(joins)), "n": len(joins)} if joins else None,
                    "server_cpu_core": (_cpu([server.pid]) - c_server) / wall,
                    "janus_cpu_core": (_cpu(janus_pids) - c_janus) / wall,
                    "translators_cpu_core": (_cpu(actor_pids) - c_actors) / wall,
                    "load_avg": os.getloadavg(),
                    "mouth_to_ear_s": {}, "after_last_word_s": {}, "missed": {},
                }  # fmt: skip
                started = track.started + time.time() - time.monotonic()  # the track's clock is monotonic
                now = time.time()
                spoken = [(started + r * period + a, started + r * period + b)
                          for r in range(int((now - started) / period) + 1) for a, b in marks]  # fmt: skip
                spoken = [(a, b) for a, b in spoken if w0 <= a and a - LEAD_S + slot <= now]  # slots wholly inside
                for lang, watcher, _ in listeners[: len(channels)]:
                    measured = mouth_to_ear(first_sounds(watcher.reception, w0 - SILENCE_GAP_S), spoken, slot)
                    row["mouth_to_ear_s"][lang] = measured["from_first_word_s"]
                    row["after_last_word_s"][lang] = measured["from_last_word_s"]
                    row["missed"][lang] = len(measured["missed"])
                row["status"] = (await (await http.get(base + "/api/event")).json())["languages"]
                row["carrying"] = {code: v["carrying"] for code, v in row["status"].items()}  # tr-xx, or the speaker
                row["translator_delay_s"] = {code: v["delay_s"] for code, v in row["status"].items()}
                results["levels"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "status"}), flush=True)
            for _, watcher, _ in listeners:
                await watcher.close()
            await session.close()
            await speaker_session.close()
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    out.write_text(json.dumps(results, indent=1))
    return results


def suite_run(ctx) -> object:  # noqa: ANN001 - benchmarks.common.BenchContext
    """``rt-f2f bench --suite event``: the same run as a child process (it needs root for its namespace)."""
    from benchmarks.common import SuiteResult, skipped
    from rt_f2f.event.netns import why_not

    reason = why_not()
    if reason:
        return skipped("event", reason)
    out = Path(ctx.out_dir) / "bench_event.json"
    levels = "1,10" if ctx.quick else "1,10,30,100"
    cmd = [sys.executable, "-m", "benchmarks.bench_event", "--levels", levels, "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        return SuiteResult(suite="event", status="failed", reason=done.stdout[-300:] + done.stderr[-300:])
    return suite_figures(json.loads(out.read_text())["levels"], levels)


def suite_figures(rows: list[dict], levels: list[int]) -> SuiteResult:  # noqa: F821 - imported lazily, like the other suites
    """The bench's rows as the suite's figures (every figure with a unit and a sample count, as `rt-f2f bench`
    validates them)."""
    from benchmarks.common import SuiteResult

    result = SuiteResult(suite="event", settings={"levels": levels, "slot_s": SLOT_S})
    for row in rows:
        n = row["listeners"]
        if row["join_s"]:
            result.add(f"{n} listeners: join p50", row["join_s"]["p50"], "s", row["join_s"]["n"])
        result.add(f"{n} listeners: server CPU", row["server_cpu_core"], "core", 1)
        result.add(f"{n} listeners: Janus CPU", row["janus_cpu_core"], "core", 1)
        for lang, delays in row["mouth_to_ear_s"].items():
            if delays:
                result.add(f"{n} listeners: mouth-to-ear {lang} p50", float(np.median(delays)), "s", len(delays))
            missed = row["missed"].get(lang, 0)
            if missed:
                phrases = missed + len(delays)
                result.add(f"{n} listeners: phrases {lang} heard too late to measure", missed, "phrases", phrases)
    return result


def _suite():  # noqa: ANN202 - benchmarks.common.Suite, imported lazily like the other suites
    from benchmarks.common import Suite

    return Suite("event", "live event through Janus: join time, mouth-to-ear per language, server and Janus CPU",
                 suite_run)  # fmt: skip


def __getattr__(name: str) -> object:
    if name == "SUITE":
        return _suite()
    raise AttributeError(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,10,30,100", help="listener counts, ascending (default 1,10,30,100)")
    parser.add_argument("--targets", default="pt", help="target languages (default pt)")
    parser.add_argument("--slot", type=float, default=SLOT_S,
                        help=f"seconds from one phrase of the talk to the next (default {SLOT_S:g})")  # fmt: skip
    parser.add_argument("--tts", help="TTS backend for every language (default: the best per language)")
    parser.add_argument("--out", type=Path, default=Path("bench_event.json"))
    args = parser.parse_args()
    from rt_f2f.event.netns import Netns, why_not

    reason = why_not()
    if reason:
        print(f"bench_event: skipped: {reason}", file=sys.stderr)
        return 2
    ns = Netns.create(f"rtf2f-bench-{os.getpid()}")
    ns.enter()
    try:
        levels = [int(x) for x in args.levels.split(",")]
        asyncio.run(run(levels, args.targets.split(","), args.slot, args.out, args.tts))
    finally:
        ns.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
