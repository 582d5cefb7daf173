"""``rt-f2f serve``: the browser video-call server.

Imports nothing heavy at module level: the top-level CLI loads every subcommand module just to list them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RtF2fError
from ..lipsync.names import add_backend_argument

if TYPE_CHECKING:
    from .limits import Limits

log = logging.getLogger(__name__)

ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the browser video-call server (join from a web page, hear each other translated)",
        description="Serve the web client and the WebRTC call server. Open the printed address, create a room and "
        "share its join link. Browsers only grant camera and microphone to https:// or localhost, so give "
        "--certfile/--keyfile when others join over the network.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--certfile", type=Path, help="TLS certificate (PEM) to serve https")
    parser.add_argument("--keyfile", type=Path, help="TLS private key (PEM) for --certfile")
    parser.add_argument(
        "--stun", action="append", default=[], metavar="URL", help="STUN server, e.g. stun:stun.example.org:3478"
    )
    parser.add_argument("--turn", metavar="URL", help="TURN server, e.g. turn:turn.example.org:3478?transport=udp")
    parser.add_argument("--turn-user", metavar="U", help="TURN user name")
    parser.add_argument("--turn-password", metavar="P", help="TURN password")
    parser.add_argument("--max-rooms", type=int, default=50, help="rooms this server holds at once (default 50)")
    parser.add_argument("--max-participants", type=int, default=4, help="people per room (default 4)")
    parser.add_argument(
        "--public-url",
        metavar="URL",
        help="base of the join links the server hands out, e.g. https://call.example.org (default: the address it "
        "listens on; never the request's Host header)",
    )
    parser.add_argument(
        "--max-rooms-per-client", type=int, default=5, help="rooms one client address holds at once (default 5)"
    )
    parser.add_argument(
        "--client-rate",
        type=float,
        default=2.0,
        metavar="N",
        help="API requests (POST) per second per client address, bursts of 10x (default 2)",
    )
    parser.add_argument(
        "--empty-room-ttl", type=float, default=120.0, metavar="S", help="an empty room expires after S s (default 120)"
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="a request's headers, and then its body, must arrive within S s (default 10)",
    )
    parser.add_argument(
        "--max-video-size",
        default="1280x720",
        metavar="WxH",
        help="largest camera picture (its area) one participant may send; larger: refused (default 1280x720)",
    )
    parser.add_argument(
        "--video-budget",
        type=int,
        default=24,
        metavar="N",
        help="all participants' decoded video together, in pictures of --max-video-size (default 24)",
    )
    parser.add_argument(
        "--video-codec", choices=("vp8", "h264"), help="force one video codec (default: the browser's first choice)"
    )
    parser.add_argument("--web-dir", type=Path, help="folder with index.html, app.js, style.css (default: bundled)")
    parser.add_argument(
        "--checkpoint_path",
        type=Path,
        help="Wav2Lip checkpoint (.pth) or LipGAN weights (.h5, recognised from the file): translated video is "
        "lip-synced to the translated speech (default: the model "
        "store's wav2lip when it is on disk; without one, translated calls show the original mouth)",
    )
    add_backend_argument(parser, "--lipsync-backend")
    parser.set_defaults(func=run)


def ice_servers(
    stun: list[str], turn: str | None, turn_user: str | None, turn_password: str | None
) -> list[dict[str, Any]]:
    """ICE servers for both ends; none unless asked (aiortc would otherwise use a public STUN server)."""
    servers: list[dict[str, Any]] = []
    for url in stun:
        if not url.startswith(("stun:", "stuns:")):
            raise RtF2fError(f"--stun {url!r} is not a STUN URL", "write it as stun:HOST:PORT")
        servers.append({"urls": [url]})
    if turn:
        if not turn.startswith(("turn:", "turns:")):
            raise RtF2fError(f"--turn {turn!r} is not a TURN URL", "write it as turn:HOST:PORT")
        if not turn_user or not turn_password:
            raise RtF2fError("--turn needs --turn-user and --turn-password", "give the TURN server's credentials")
        servers.append({"urls": [turn], "username": turn_user, "credential": turn_password})
    elif turn_user or turn_password:
        raise RtF2fError("--turn-user/--turn-password given without --turn", "add --turn URL")
    return servers


def public_url(url: str | None) -> str | None:
    """``--public-url``: an http(s) origin with an optional path, nothing a link could be bent with."""
    if url is None:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise RtF2fError(f"--public-url {url!r} is not an http(s) URL", "write it as https://HOST[:PORT][/PATH]")
    if parts.query or parts.fragment or parts.username or parts.password or not url.isascii():
        raise RtF2fError(f"--public-url {url!r} has parts a base URL cannot have", "give scheme, host, port and path")
    return url.rstrip("/")


def video_size(text: str) -> int:
    """``--max-video-size WxH`` as a pixel count."""
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()) or int(width) < 16 or int(height) < 16:
        raise RtF2fError(f"--max-video-size {text!r} is not a picture size", "write it as WIDTHxHEIGHT, e.g. 1280x720")
    return int(width) * int(height)


def limits_from_args(args: argparse.Namespace) -> Limits:
    """Every ``serve`` limit flag, checked, as ``Limits``."""
    from .limits import Limits

    checks = [
        (args.max_participants >= 2, "--max-participants must be at least 2"),
        (args.max_rooms >= 1, "--max-rooms must be at least 1"),
        (args.max_rooms_per_client >= 1, "--max-rooms-per-client must be at least 1"),
        (args.client_rate > 0, "--client-rate must be above 0"),
        (args.empty_room_ttl > 0, "--empty-room-ttl must be above 0"),
        (args.request_timeout > 0, "--request-timeout must be above 0"),
        (args.video_budget >= 1, "--video-budget must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise RtF2fError(message, "see rt-f2f serve --help for each limit's default")
    max_video_pixels = video_size(args.max_video_size)
    return Limits(
        max_rooms=args.max_rooms,
        max_participants=args.max_participants,
        max_rooms_per_client=args.max_rooms_per_client,
        client_requests_per_second=args.client_rate,
        client_burst=max(1, int(10 * args.client_rate)),
        empty_room_ttl_s=args.empty_room_ttl,
        header_timeout_s=args.request_timeout,
        body_timeout_s=args.request_timeout,
        max_video_pixels=max_video_pixels,
        max_total_video_pixels=args.video_budget * max_video_pixels,
    )


def run(args: argparse.Namespace) -> int:
    import asyncio
    import ssl

    from .app import DEFAULT_WEB_DIR, ServerConfig, create_app
    from .feeds.factory import default_feed_factory
    from .feeds.lipsync_model import lipsync_for_server
    from .limits import MediaSettings

    limits = limits_from_args(args)
    base_url = public_url(args.public_url)
    if not 0 < args.port < 65536:
        raise RtF2fError(f"--port {args.port} is out of range", "use 1..65535")
    ssl_context = None
    if bool(args.certfile) != bool(args.keyfile):
        raise RtF2fError("--certfile and --keyfile go together", "give both, or neither for plain http")
    if args.certfile:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_context.load_cert_chain(str(args.certfile), str(args.keyfile))
        except (OSError, ssl.SSLError) as exc:
            raise RtF2fError(f"cannot load the TLS certificate: {exc}", "check both PEM files") from exc
    web_dir = args.web_dir or DEFAULT_WEB_DIR
    if not (web_dir / "index.html").is_file():
        raise RtF2fError(f"{web_dir}/index.html not found", "pass --web-dir pointing at the web client folder")
    config = ServerConfig(
        limits=limits,
        media=MediaSettings(video_codec=args.video_codec),
        ice_servers=ice_servers(args.stun, args.turn, args.turn_user, args.turn_password),
        web_dir=web_dir,
        public_url=base_url,
    )
    lipsync = lipsync_for_server(args.checkpoint_path, args.lipsync_backend)  # a bad checkpoint fails here
    if lipsync is not None:
        print(f"rt-f2f: lip-sync on ({lipsync.backend_name}, {lipsync.checkpoint})", flush=True)
    scheme = "https" if ssl_context else "http"
    print(f"rt-f2f: serving on {scheme}://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    app = create_app(config, default_feed_factory(lipsync=lipsync))
    try:
        asyncio.run(_serve(app, args.host, args.port, ssl_context))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise RtF2fError(f"cannot listen on {args.host}:{args.port}: {exc}", "pick another --port or --host") from exc
    return 0


async def _serve(app, host: str, port: int, ssl_context) -> None:
    """Run until interrupted, on the guarded runner (aiohttp's web.run_app would build its own)."""
    import asyncio

    from aiohttp import web

    from .app import make_runner

    runner = make_runner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
