"""A network namespace with one veth address, for Janus and its aiortc peers in tests and benchmarks.

Root only: creating a namespace needs CAP_SYS_ADMIN. ``enter`` moves the calling thread (the test's main thread)
into it with setns(2); processes and threads started afterwards (Janus, Ray, aiortc's workers) inherit it, and
``leave`` moves the thread back. Both veth ends live inside the namespace, so nothing outside sees it.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
ADDRESS = "10.213.0.1"
PEER = "10.213.0.2"
INTERFACE = "rtf2fev0"


def why_not() -> str | None:
    """None when a namespace can be made here, else the reason (for pytest.skip)."""
    if os.geteuid() != 0:
        return "needs root to create a network namespace (Janus ignores loopback for ICE); run the tests as root"
    if subprocess.run(["which", "ip"], capture_output=True).returncode != 0:
        return "needs iproute2's `ip` to create a network namespace"
    if subprocess.run(["which", "janus"], capture_output=True).returncode != 0:
        return "needs Janus (Debian `janus`; scripts/test.sh installs it)"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Netns:
    name: str
    _home: int | None = None

    @classmethod
    def create(cls, name: str) -> Netns:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        _ip("netns", "add", name)
        ns = ["netns", "exec", name, "ip"]
        _ip(*ns, "link", "set", "lo", "up")
        _ip(*ns, "link", "add", INTERFACE, "type", "veth", "peer", "name", INTERFACE + "p")
        _ip(*ns, "addr", "add", f"{ADDRESS}/24", "dev", INTERFACE)
        _ip(*ns, "addr", "add", f"{PEER}/24", "dev", INTERFACE + "p")
        _ip(*ns, "link", "set", INTERFACE, "up")
        _ip(*ns, "link", "set", INTERFACE + "p", "up")
        return cls(name)

    def enter(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._home = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the test namespace failed")
        finally:
            os.close(fd)

    def leave(self) -> None:
        if self._home is not None:
            ctypes.CDLL(None, use_errno=True).setns(self._home, CLONE_NEWNET)
            os.close(self._home)
            self._home = None

    def delete(self) -> None:
        self.leave()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
