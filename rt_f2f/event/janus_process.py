"""Running Janus WebRTC Gateway for an event: its own config folder, its own ports, watched and restartable.

rt-f2f never edits /etc/janus: each event writes a config folder that loads only the plugins and transport it uses
(VideoRoom, Streaming, HTTP), so a stock Debian ``janus`` works without setup and two events never collide.
Janus ignores loopback for ICE, so ``ice_interfaces`` names the interface(s) it may use (a veth inside a network
namespace in tests; the machine's LAN interface in production).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RtF2fError

log = logging.getLogger(__name__)

PLUGIN_DIR = Path("/usr/lib/x86_64-linux-gnu/janus")
KEEP_PLUGINS = ("libjanus_videoroom.so", "libjanus_streaming.so")
KEEP_TRANSPORTS = ("libjanus_http.so",)


class JanusError(RtF2fError):
    """Janus is missing, unreachable, or refused a request."""


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (the usual race applies; Janus fails loudly if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class JanusConfig:
    """What the event's Janus needs to know; ``write`` turns it into a config folder."""

    http_port: int = 0  # 0: pick a free one
    http_host: str = "127.0.0.1"
    ice_interfaces: tuple[str, ...] = ()  # empty: Janus's own choice (every non-loopback interface)
    nat_1_1: str | None = None  # public address to advertise, when behind NAT
    rtp_port_range: str = "20000-40000"
    debug_level: int = 3
    session_timeout: int = 60
    binary: str = "janus"
    plugin_dir: Path = PLUGIN_DIR

    def __post_init__(self) -> None:
        if not self.http_port:
            self.http_port = free_port()

    @property
    def url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}/janus"

    def write(self, folder: Path) -> Path:
        """Write janus.jcfg and the plugin/transport configs into ``folder``; return it."""
        folder.mkdir(parents=True, exist_ok=True)
        disabled = lambda sub, keep: ",".join(  # noqa: E731 - a one-line helper local to this method
            sorted(p.name for p in (self.plugin_dir / sub).glob("*.so") if p.name not in keep)
        )
        nat = [f'ice_enforce_list = "{",".join(self.ice_interfaces)}"'] if self.ice_interfaces else []
        if self.nat_1_1:
            nat.append(f'nat_1_1_mapping = "{self.nat_1_1}"')
        nat.append("ignore_mdns = true")
        general = [
            f'configs_folder = "{folder}"',
            f'plugins_folder = "{self.plugin_dir / "plugins"}"',
            f'transports_folder = "{self.plugin_dir / "transports"}"',
            f'events_folder = "{self.plugin_dir / "events"}"',
            f'loggers_folder = "{self.plugin_dir / "loggers"}"',
            f"debug_level = {self.debug_level}",
            f"session_timeout = {self.session_timeout}",
        ]
        (folder / "janus.jcfg").write_text(
            _section("general", general)
            + _section("media", [f'rtp_port_range = "{self.rtp_port_range}"'])
            + _section("nat", nat)
            + _section("plugins", [f'disable = "{disabled("plugins", KEEP_PLUGINS)}"'])
            + _section("transports", [f'disable = "{disabled("transports", KEEP_TRANSPORTS)}"'])
            + _section("events", ["broadcast = false"])
            + _section("loggers", [f'disable = "{disabled("loggers", ())}"'])
        )
        (folder / "janus.transport.http.jcfg").write_text(
            _section(
                "general",
                [
                    'base_path = "/janus"',
                    "http = true",
                    f"port = {self.http_port}",
                    f'ip = "{self.http_host}"',
                    "https = false",
                ],
            )  # fmt: skip
            + _section("admin", ["admin_http = false"])
            + _section("cors", ['allow_origin = "*"'])
        )
        for plugin in ("videoroom", "streaming"):
            (folder / f"janus.plugin.{plugin}.jcfg").write_text(_section("general", ["events = false"]))
        return folder


def _section(name: str, lines: list[str]) -> str:
    return f"{name}: {{\n" + "".join(f"\t{line}\n" for line in lines) + "}\n"


@dataclass
class JanusProcess:
    """A Janus child process in its own config folder; ``restart`` brings it back on the same port."""

    config: JanusConfig
    folder: Path
    log_path: Path = field(init=False)
    proc: subprocess.Popen | None = None
    restarts: int = 0

    def __post_init__(self) -> None:
        self.log_path = self.folder / "janus.log"

    @staticmethod
    def check_installed(binary: str = "janus") -> str:
        path = shutil.which(binary)
        if path is None:
            raise JanusError(
                "Janus WebRTC Gateway is not installed (no `janus` on PATH)",
                "install it (Debian: `apt-get install janus`) or pass --janus URL of a running Janus",
            )
        return path

    async def start(self, timeout: float = 10.0) -> None:
        binary = self.check_installed(self.config.binary)
        self.config.write(self.folder)
        logfile = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed with it
        self.proc = subprocess.Popen(
            [binary, "-F", str(self.folder), "-C", str(self.folder / "janus.jcfg")],
            stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        logfile.close()
        await wait_ready(self.config.url, timeout, self.proc, self.log_path)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def restart(self, timeout: float = 10.0) -> None:
        self.stop()
        self.restarts += 1
        await self.start(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cpu_seconds(self) -> float | None:
        """User + system CPU time Janus has used (for the benchmark), from /proc."""
        if not self.alive:
            return None
        return process_cpu_seconds(self.proc.pid)


def process_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_ready(
    url: str, timeout: float, proc: subprocess.Popen | None = None, log_path: Path | None = None
) -> dict:
    """Poll Janus's ``info`` until it answers; fail with the log's tail when the process died or time ran out."""
    import aiohttp

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-600:] if log_path and log_path.exists() else ""
                raise JanusError(f"Janus exited with code {proc.returncode} at start: {tail.strip()[-300:]}",
                                 "check the log in the event's Janus folder")  # fmt: skip
            try:
                async with http.get(url + "/info", timeout=aiohttp.ClientTimeout(total=1)) as resp:
                    info = await resp.json(content_type=None)
                    if info.get("janus") == "server_info":
                        return info
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                last = exc
            await asyncio.sleep(0.1)
    raise JanusError(f"Janus at {url} did not answer within {timeout:.0f} s ({last})",
                     "check that Janus runs and that the URL is its HTTP API (…/janus)")  # fmt: skip
