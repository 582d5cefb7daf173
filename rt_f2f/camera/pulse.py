"""The Linux virtual microphone: a PulseAudio / PipeWire null sink plus a ``module-remap-source`` of its monitor.

Call apps list sources, not monitors, as microphones, so rt-f2f plays into a null sink ``NAME-sink`` and exposes its
monitor as the source ``NAME`` (``--virtual-mic NAME``). Both modules are loaded with ``pactl`` (PipeWire's
``pipewire-pulse`` understands the same commands) and unloaded when the run ends, however it ends: ``close`` runs
from the session's ``finally`` and, as a last resort, at interpreter exit. Nothing is loaded when the server is
missing or the name is taken, and a half-made device (sink loaded, remap failed) is removed before the error.
"""

from __future__ import annotations

import atexit
import re
import shutil
import subprocess

from .devices import DeviceError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
NO_SERVER_HINT = (
    "start PulseAudio (`pulseaudio --start`) or PipeWire (`systemctl --user start pipewire-pulse`), "
    "or write the audio to a file with --wav PATH"
)


def pactl(*args: str, timeout: float = 10.0) -> str:
    """Run ``pactl``; its failure becomes a DeviceError with what it said."""
    exe = shutil.which("pactl")
    if exe is None:
        raise DeviceError(
            "pactl is not installed: the virtual microphone needs PulseAudio or PipeWire's pulse server",
            "install it (Debian: apt install pulseaudio-utils) or write the audio with --wav PATH",
        )
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise DeviceError("the PulseAudio / PipeWire server does not answer", NO_SERVER_HINT) from exc
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise DeviceError(f"pactl {' '.join(args[:2])} failed: {said[-1] if said else done.returncode}", NO_SERVER_HINT)
    return done.stdout


def server_running() -> bool:
    try:
        pactl("info", timeout=5.0)
    except DeviceError:
        return False
    return True


def short_names(kind: str) -> list[str]:
    """Names of the server's sinks or sources (``pactl list short sinks|sources``)."""
    return [line.split("\t")[1] for line in pactl("list", "short", kind).splitlines() if "\t" in line]


class PulseVirtualMic:
    """Creates the sink and the source in ``open``; ``close`` removes them (idempotent)."""

    def __init__(self, name: str) -> None:
        if not NAME.match(name):
            raise DeviceError(
                f"virtual microphone name {name!r} is not usable",
                "use letters, digits, '-', '_' or '.', e.g. rt-f2f-mic",
            )
        self.name = name
        self.sink = f"{name}-sink"
        self._modules: list[str] = []

    def open(self) -> PulseVirtualMic:
        try:
            pactl("info", timeout=5.0)
        except DeviceError as exc:
            raise DeviceError("no PulseAudio or PipeWire server is running for this user", NO_SERVER_HINT) from exc
        taken = set(short_names("sources")) | set(short_names("sinks"))
        for wanted in (self.name, self.sink):
            if wanted in taken:
                raise DeviceError(
                    f"a sound device named {wanted!r} already exists (another rt-f2f camera running?)",
                    "pick another --virtual-mic name, or remove it: pactl unload-module <id from `pactl list short modules`>",
                )
        atexit.register(self.close)
        try:
            self._modules.append(
                pactl("load-module", "module-null-sink", f"sink_name={self.sink}",
                      f"sink_properties=device.description={self.sink}").strip()
            )  # fmt: skip
            self._modules.append(
                pactl("load-module", "module-remap-source", f"master={self.sink}.monitor", f"source_name={self.name}",
                      f"source_properties=device.description={self.name}").strip()
            )  # fmt: skip
        except BaseException:
            self.close()
            raise
        return self

    @property
    def created(self) -> bool:
        return bool(self._modules)

    def close(self) -> None:
        """Unload what was loaded, newest first; a server that went away has removed them already."""
        while self._modules:
            module = self._modules.pop()
            try:
                pactl("unload-module", module, timeout=5.0)
            except DeviceError:
                pass
        atexit.unregister(self.close)

    def __enter__(self) -> PulseVirtualMic:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
