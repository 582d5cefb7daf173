"""Live-event benchmark: listeners 1/10/30/100 through Janus; join time, mouth-to-ear per language, server CPU.

Runs ``rt-f2f event start`` (without --input) as a child process inside a network namespace (root only: Janus
ignores loopback for ICE), and plays the speaker from this process: a recorded English talk, once every
``--period`` seconds, published into the event's room as the speaker, exactly as the speaker page does. So this
process knows when every word was spoken. Listeners (aiortc, audio only, round-robin over the channels) are
added in steps; at each step it measures:
- join time: POST /api/event/listeners -> WebRTC connected to the mountpoint (p50, p95, max);
- mouth-to-ear per channel: for each repetition of the talk, the first sound a probe listener of that channel hears
  after a silence, minus when the talk's first word left the speaker (original: passthrough; translated: first
  translated word, an ear-voice span);
- CPU, as a share of one core, over one period: the event's Python process (with its local Ray's translators
  excluded: they are separate processes, reported apart) and Janus.

    sudo python -m benchmarks.bench_event --levels 1,10,30 --targets pt --out /tmp/bench_event.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TALK = ROOT / "examples" / "en_sample.wav"
SILENCE_GAP_S = 2.5


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


def first_sounds(reception, after: float, threshold: float = 0.02) -> list[float]:
    """Wall times when sound starts after at least SILENCE_GAP_S of quiet (20 ms blocks as they arrived)."""
    out, quiet_since = [], None
    for block, wall in zip(reception.audio, reception.audio_arrival, strict=True):
        if wall < after:
            continue
        loud = np.abs(block).max(initial=0) > threshold
        if not loud:
            quiet_since = wall if quiet_since is None else quiet_since
        elif quiet_since is not None and wall - quiet_since >= SILENCE_GAP_S:
            out.append(wall)
            quiet_since = None
        elif loud:
            quiet_since = None
    return out


async def run(levels: list[int], targets: list[str], period: float, out: Path, tts: str | None = None) -> dict:
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
    results: dict = {"levels": [], "targets": targets, "tts": tts or "default", "period_s": period,
                     "load_avg_start": os.getloadavg()}  # fmt: skip
    try:
        while "listener link" not in (line := server.stdout.readline()):
            if not line:
                raise RuntimeError("the event command exited")
        async with aiohttp.ClientSession() as http:
            status = await (await http.get(base + "/api/event")).json()
            room, janus = status["room"], status["janus"]
            talk = read_audio(TALK, 48000)
            voiced = np.flatnonzero(np.abs(talk) > 0.02)
            first_word = voiced[0] / 48000 if voiced.size else 0.0
            clip = np.concatenate([talk, np.zeros(int(max(0.0, period - talk.size / 48000) * 48000), np.float32)])
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
            channels = ["original", *targets]
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
                    "mouth_to_ear_s": {},
                }  # fmt: skip
                started = track.started + time.time() - time.monotonic()  # the track's clock is monotonic
                spoken = [started + k * period + first_word for k in range(int((time.time() - started) / period) + 2)]
                for lang, watcher, _ in listeners[: len(channels)]:
                    onsets = first_sounds(watcher.reception, w0)
                    delays = []
                    for said in spoken:  # the first sound heard after each repetition began (its first word)
                        heard = [o for o in onsets if said + 0.05 < o < said + period]
                        if heard and said >= w0 - period:
                            delays.append(heard[0] - said)
                    row["mouth_to_ear_s"][lang] = delays
                row["status"] = (await (await http.get(base + "/api/event")).json())["languages"]
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
    result = SuiteResult(suite="event", settings={"levels": levels, "period_s": 30.0})
    for row in json.loads(out.read_text())["levels"]:
        n = row["listeners"]
        if row["join_s"]:
            result.add(f"{n} listeners: join p50", row["join_s"]["p50"], "s", row["join_s"]["n"])
        result.add(f"{n} listeners: server CPU", row["server_cpu_core"], "core", 1)
        result.add(f"{n} listeners: Janus CPU", row["janus_cpu_core"], "core", 1)
        for lang, delays in row["mouth_to_ear_s"].items():
            if delays:
                result.add(f"{n} listeners: mouth-to-ear {lang} p50", float(np.median(delays)), "s", len(delays))
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
    parser.add_argument("--period", type=float, default=30.0, help="the talk repeats every PERIOD seconds")
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
        asyncio.run(run(levels, args.targets.split(","), args.period, args.out, args.tts))
    finally:
        ns.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
