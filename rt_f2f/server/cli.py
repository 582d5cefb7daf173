"""``rt-f2f serve``: the browser video-call server.

Imports nothing heavy at module level: the top-level CLI loads every subcommand module just to list them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ..errors import RtF2fError
from ..lipsync.names import BACKEND_NAMES

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
        "--video-codec", choices=("vp8", "h264"), help="force one video codec (default: the browser's first choice)"
    )
    parser.add_argument("--web-dir", type=Path, help="folder with index.html, app.js, style.css (default: bundled)")
    parser.add_argument(
        "--checkpoint_path",
        type=Path,
        help="Wav2Lip checkpoint: translated video is lip-synced to the translated speech (default: the model "
        "store's wav2lip when it is on disk; without one, translated calls show the original mouth)",
    )
    parser.add_argument(
        "--lipsync-backend",
        choices=BACKEND_NAMES,
        help="lip-sync engine (default: the fastest available here)",
    )
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


def run(args: argparse.Namespace) -> int:
    import ssl

    from aiohttp import web

    from .app import DEFAULT_WEB_DIR, ServerConfig, create_app
    from .feeds.factory import default_feed_factory
    from .feeds.lipsync_model import lipsync_for_server
    from .limits import Limits, MediaSettings

    if args.max_participants < 2 or args.max_rooms < 1:
        raise RtF2fError("--max-participants must be at least 2 and --max-rooms at least 1")
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
        limits=Limits(max_rooms=args.max_rooms, max_participants=args.max_participants),
        media=MediaSettings(video_codec=args.video_codec),
        ice_servers=ice_servers(args.stun, args.turn, args.turn_user, args.turn_password),
        web_dir=web_dir,
    )
    lipsync = lipsync_for_server(args.checkpoint_path, args.lipsync_backend)  # a bad checkpoint fails here
    if lipsync is not None:
        print(f"rt-f2f: lip-sync on ({lipsync.backend_name}, {lipsync.checkpoint})", flush=True)
    scheme = "https" if ssl_context else "http"
    print(f"rt-f2f: serving on {scheme}://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    try:
        web.run_app(
            create_app(config, default_feed_factory(lipsync=lipsync)),
            host=args.host,
            port=args.port,
            ssl_context=ssl_context,
            print=None,
            access_log=None,
        )
    except OSError as exc:
        raise RtF2fError(f"cannot listen on {args.host}:{args.port}: {exc}", "pick another --port or --host") from exc
    return 0
