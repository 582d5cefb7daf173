"""``rt-f2f event start``: a live event with one speaker, many languages, and listeners through Janus.

Imports nothing heavy at module level (ray, aiortc and the models load inside ``run``), so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import RtF2fError

log = logging.getLogger(__name__)

DESCRIPTION = """\
Run a live event: one speaker (a browser, or --input FILE playing a recorded talk), listeners who pick a
language, and one translator per language. Janus WebRTC Gateway fans the streams out to listeners, so this
process's CPU does not grow with them. Prints the speaker link and the listener link.

One machine: `rt-f2f event start --source en --targets pt` starts Janus (Debian package `janus`) in its own
config folder and a local Ray instance; translators start when a language's first listener arrives (--pin starts
them now). Janus ignores loopback for ICE, so listeners on other machines reach it through the machine's LAN
interface (--ice-interface eth0).

Ray cluster: start Ray on every node (`ray start --head` on one, `ray start --address HEAD:6379` on the others,
each with rt-f2f installed), then `rt-f2f event start ... --ray-address HEAD:6379`: each translator is placed by
Ray on a node with a free GPU (or --translator-cpus cores when the cluster has no GPUs); a language that does not
fit is refused with what is short. Translators publish their audio into Janus over WebRTC from wherever they run.

An existing Janus: --janus http://host:8088/janus (its HTTP API, with the VideoRoom and Streaming plugins).
"""


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    event = subparsers.add_parser(
        "event", help="live-event interpretation: one speaker, many languages, many listeners"
    )
    sub = event.add_subparsers(dest="event_command", metavar="ACTION")
    p = sub.add_parser("start", help="start an event and print the speaker and listener links",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--source", required=True, help="language the speaker speaks (ISO 639-1, e.g. en)")
    p.add_argument("--targets", required=True, help="languages offered to listeners, comma-separated (e.g. pt,es,de)")
    p.add_argument("--input", metavar="FILE", help="play this recorded talk as the speaker (default: a browser)")
    p.add_argument("--loop", action="store_true", help="play --input again and again until the event ends")
    p.add_argument("--janus", metavar="URL", help="use a running Janus (its HTTP API, …/janus) instead of starting one")
    p.add_argument("--ice-interface", action="append", default=[], metavar="IF",
                   help="network interface Janus may use for ICE (repeatable; default: all but loopback)")  # fmt: skip
    p.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (default: a local instance)")
    p.add_argument("--translator-cpus", type=float, default=0.5,
                   help="CPU cores Ray reserves per translator when the cluster has no GPUs (default 0.5)")  # fmt: skip
    p.add_argument("--pin", action="store_true", help="start every translator now and keep it without listeners")
    p.add_argument("--checkpoint_path", metavar="CKPT",
                   help="Wav2Lip checkpoint: not yet supported in event mode (listeners see the speaker's video)")  # fmt: skip
    p.add_argument("--mt-model", help="MT model name or CTranslate2 folder (default: by pair)")
    p.add_argument("--tts", help="TTS backend: piper, kokoro or espeak (default: by language)")
    p.add_argument("--host", default="127.0.0.1", help="address the event's web pages listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="port of the event's web pages (default 8090)")
    p.add_argument("--duration", type=float, help="end the event after this many seconds (default: at Ctrl-C)")
    p.set_defaults(func=run)
    event.set_defaults(func=lambda args: (event.print_help(), 1)[1])


def run(args: argparse.Namespace) -> int:
    from .controller import EventConfig

    if args.checkpoint_path:
        raise RtF2fError("lip-sync is not wired into event mode yet",
                         "drop --checkpoint_path: listeners see the speaker's own video with translated speech")  # fmt: skip
    targets = tuple(t for t in args.targets.split(",") if t.strip())
    if not targets:
        raise RtF2fError("--targets is empty", "give at least one language, e.g. --targets pt")
    config = EventConfig(
        source=args.source, targets=targets, janus_url=args.janus, ice_interfaces=tuple(args.ice_interface),
        ray_address=args.ray_address, translator_cpus=args.translator_cpus, input_file=args.input, input_loop=args.loop, pin=args.pin,
        mt_model=args.mt_model, tts_backend=args.tts,
    )  # fmt: skip
    import asyncio  # here, not at the top: ``rt-f2f event --help`` imports nothing it does not need

    return asyncio.run(_serve(config, args.host, args.port, args.duration))


async def _serve(config, host: str, port: int, duration: float | None) -> int:  # noqa: ANN001 - EventConfig
    import asyncio
    import signal

    from aiohttp import web

    from .api import build_app
    from .controller import EventController

    controller = EventController(config)
    runner = None
    try:
        await controller.start()
        runner = web.AppRunner(build_app(controller))
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        base = f"http://{host}:{port}"
        print(f"event {config.room}: {config.source} -> {', '.join(config.targets)}; Janus at {controller.janus_url}")
        print(f"speaker link:  {base}/event?role=speaker")
        print(f"listener link: {base}/event")
        print(f"organiser API: {base}/api/event")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await asyncio.wait_for(stop.wait(), duration)
        except TimeoutError:
            pass
    finally:
        if runner is not None:
            await runner.cleanup()
        await controller.stop()
        from .placement import shutdown

        shutdown()
    return 0
