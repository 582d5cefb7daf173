"""``rt-f2f event start``: a live event with one speaker, many languages, and listeners through Janus.

Imports nothing heavy at module level (ray, aiortc and the models load inside ``run``), so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import RtF2fError
from ..lipsync.names import add_backend_argument

log = logging.getLogger(__name__)

DESCRIPTION = """\
Run a live event: one speaker (a browser, or --input FILE playing a recorded talk), listeners who pick a
language, and one translator per language. Janus WebRTC Gateway fans the streams out to listeners, so this
process's CPU does not grow with them. Prints the speaker link and the listener link.

One machine: `rt-f2f event start --source en --targets pt,es` starts Janus (Debian package `janus`) in its own
config folder and a local Ray instance (no cluster needed), and runs every translator on this machine;
translators start when a language's first listener arrives (--pin starts them now). `--input talk.mp4 --loop`
plays a recorded talk as the speaker: a video sends its own pictures with its sound, restarting both together
(scaled down by a whole factor above 1280x720), so lip-sync has the speaker's face; a sound-only file sends a
test pattern. The file is checked before anything starts. Browsers on this machine need nothing more. For
listeners on other machines add `--host 0.0.0.0 --public-host LAN_ADDR --ice-interface eth0`: the pages, Janus's
HTTP API and its media are then reached at this machine's LAN address (Janus ignores loopback for ICE).

Ray cluster: install rt-f2f (`pip install 'rt-f2f[event]'`) and the models of the languages on every node, start
Ray (`RAY_worker_niceness=0 ray start --head` on one node, `RAY_worker_niceness=0 ray start --address HEAD:6379`
on the others: by default Ray runs its workers at nice 15, and a translator on a busy node falls behind), then on
the head run `rt-f2f event start ... --ray-address HEAD:6379 --public-host HEAD_LAN_ADDR`: Ray places each
translator on a node with a free GPU (or --translator-cpus cores when the cluster has no GPUs); a language that
does not fit is refused up front naming what is short. Translators reach Janus at --public-host and send their speech over
WebRTC from wherever they run; Ray carries only clauses (text) and health calls.

An existing Janus: --janus http://host:8088/janus (its HTTP API, with the VideoRoom and Streaming plugins).

Lip-sync: --checkpoint_path wav2lip.pth (or LipGAN .h5 weights) makes every translator re-mouth the speaker's
video for its translated speech and publish both on one clock, as a call's lip-sync feed does: listeners of each
language see the speaker 2 s late (the picture's fixed delay) with the mouth moving to the words they hear. The
file is checked here before anything starts and every translator loads it (on a Ray cluster the same path must
hold it on every node). Each translator then also runs a Wav2Lip generator and a face tracker: on CPUs give it
more cores with --translator-cpus. Without --checkpoint_path listeners see the speaker's own video.
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
    p.add_argument("--input", metavar="FILE",
                   help="play this recorded talk (video with sound, or sound only) as the speaker, in real time "
                        "(default: a browser)")  # fmt: skip
    p.add_argument("--loop", action="store_true", help="play --input again and again until the event ends")
    p.add_argument("--janus", metavar="URL", help="use a running Janus (its HTTP API, …/janus) instead of starting one")
    p.add_argument("--ice-interface", action="append", default=[], metavar="IF",
                   help="network interface Janus may use for ICE (repeatable; default: all but loopback)")  # fmt: skip
    p.add_argument("--public-host", default="127.0.0.1", metavar="ADDR",
                   help="an address of this machine that listeners' browsers and other Ray nodes reach: Janus's "
                        "HTTP API and caption ports are served there (default 127.0.0.1: one machine)")  # fmt: skip
    p.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (default: a local instance)")
    p.add_argument("--translator-cpus", type=float, default=0.5,
                   help="CPU cores Ray reserves per translator when the cluster has no GPUs (default 0.5)")  # fmt: skip
    p.add_argument("--pin", action="store_true", help="start every translator now and keep it without listeners")
    p.add_argument("--checkpoint_path", metavar="CKPT",
                   help="Wav2Lip checkpoint (.pth) or LipGAN weights (.h5): every translator re-mouths the "
                        "speaker's video for its speech (default: none, listeners see the speaker's own video)")  # fmt: skip
    add_backend_argument(p, "--lipsync-backend")
    p.add_argument("--mt-model", help="MT model name or CTranslate2 folder (default: by pair)")
    p.add_argument("--tts", help="TTS backend: piper, kokoro or espeak (default: by language)")
    p.add_argument("--host", default="127.0.0.1", help="address the event's web pages listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="port of the event's web pages (default 8090)")
    p.add_argument("--duration", type=float, help="end the event after this many seconds (default: at Ctrl-C)")
    p.set_defaults(func=run)
    event.set_defaults(func=lambda args: (event.print_help(), 1)[1])


def run(args: argparse.Namespace) -> int:
    from .controller import EventConfig

    targets = tuple(t for t in args.targets.split(",") if t.strip())
    if not targets:
        raise RtF2fError("--targets is empty", "give at least one language, e.g. --targets pt")
    checkpoint = check_checkpoint(args.checkpoint_path, args.lipsync_backend)
    config = EventConfig(
        source=args.source, targets=targets, janus_url=args.janus, ice_interfaces=tuple(args.ice_interface),
        public_host=args.public_host,
        ray_address=args.ray_address, translator_cpus=args.translator_cpus, input_file=args.input, input_loop=args.loop, pin=args.pin,
        mt_model=args.mt_model, tts_backend=args.tts, checkpoint_path=checkpoint, lipsync_backend=args.lipsync_backend,
    )  # fmt: skip
    import asyncio  # here, not at the top: ``rt-f2f event --help`` imports nothing it does not need

    return asyncio.run(_serve(config, args.host, args.port, args.duration))


def check_checkpoint(checkpoint: str | None, backend: str | None) -> str | None:
    """The lip-sync checkpoint every translator will load, checked before Janus and Ray start: loaded once here the
    way ``rt-f2f serve`` and ``rt-f2f camera`` load theirs (``load_lipsync``), so a missing, unreadable or wrong
    file, or a backend this machine lacks, is one line with what to do. Returned as an absolute path: Ray workers
    run in another directory."""
    if checkpoint is None:
        if backend is not None:
            raise RtF2fError("--lipsync-backend given, but there is no lip-sync checkpoint",
                             "pass --checkpoint_path wav2lip.pth, or drop --lipsync-backend")  # fmt: skip
        return None
    from pathlib import Path

    from ..server.feeds.lipsync_model import load_lipsync

    model = load_lipsync(checkpoint, backend)
    print(f"rt-f2f: lip-sync on ({model.backend_name}, {model.checkpoint})", flush=True)
    return str(Path(checkpoint).resolve())


async def _serve(config, host: str, port: int, duration: float | None) -> int:  # noqa: ANN001 - EventConfig
    import asyncio
    import signal

    from .api import build_app, serve
    from .controller import EventController

    controller = EventController(config)
    runner = None
    try:
        await controller.start()
        runner, base = await serve(build_app(controller), host, port)
        if host in ("0.0.0.0", "::"):  # every interface: give out the address others reach
            base = f"http://{config.public_host}:{port}"
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
