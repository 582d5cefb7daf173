"""Which cameras, microphones and sound outputs exist, and the one-line errors about devices.

Cameras are read by PyAV through FFmpeg's capture input of the platform (``v4l2`` on Linux, ``avfoundation`` on
macOS, ``dshow`` on Windows); microphones and sound outputs through sounddevice (PortAudio). On Linux the cameras
are listed from sysfs (``/sys/class/video4linux``), which names each device without opening it: listing never
takes a camera away from the app that is using it.
"""

from __future__ import annotations

import platform
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import RtF2fError

SYSFS_VIDEO = Path("/sys/class/video4linux")


class DeviceError(RtF2fError):
    """A camera, microphone or virtual device is missing, busy or not set up."""


@dataclass(frozen=True)
class Device:
    kind: str  # "camera" | "microphone" | "speaker"
    name: str  # what to pass on the command line
    label: str  # what the system calls it
    note: str = ""


def camera_format() -> str:
    """FFmpeg's capture input on this platform."""
    return {"Darwin": "avfoundation", "Windows": "dshow"}.get(platform.system(), "v4l2")


def default_camera() -> str:
    return {"Darwin": "0", "Windows": ""}.get(platform.system(), "/dev/video0")


def ffmpeg_camera_url(device: str) -> str:
    """What FFmpeg opens for ``device``: dshow wants ``video=NAME``; avfoundation takes an index or a name."""
    if camera_format() == "dshow" and not device.startswith("video="):
        return f"video={device}"
    return device


def linux_video_devices() -> list[Device]:
    """Every /dev/videoN with its sysfs name; v4l2loopback devices say so (they are outputs, not cameras)."""
    out = []
    if not SYSFS_VIDEO.is_dir():
        return out
    for entry in sorted(SYSFS_VIDEO.iterdir(), key=lambda p: (len(p.name), p.name)):
        label = (entry / "name").read_text(errors="replace").strip() if (entry / "name").exists() else entry.name
        driver = entry / "device" / "driver"
        loopback = "loopback" in label.lower() or (driver.exists() and "loopback" in driver.resolve().name)
        out.append(Device("camera", f"/dev/{entry.name}", label, "v4l2loopback (virtual camera)" if loopback else ""))
    return out


def list_cameras() -> list[Device]:
    if platform.system() == "Linux":
        return linux_video_devices()
    return _ffmpeg_listed_cameras()


def _ffmpeg_listed_cameras() -> list[Device]:
    """avfoundation and dshow list their devices in FFmpeg's log when asked to open ``list_devices``."""
    import av
    import av.logging

    fmt = camera_format()
    url = "" if fmt == "avfoundation" else "dummy"
    lines: list[str] = []
    with av.logging.Capture() as logs:
        try:
            av.open(url, format=fmt, options={"list_devices": "true"}).close()
        except (av.error.FFmpegError, OSError):
            pass  # listing always "fails": FFmpeg exits the open after printing the list
        lines = [message for _, _, message in logs]
    devices, in_video = [], True
    for line in lines:
        text = line.strip()
        if "audio devices" in text.lower():
            in_video = False
        elif in_video and text.startswith("[") and "]" in text and "video devices" not in text.lower():
            index, _, name = text.partition("]")
            devices.append(Device("camera", index.strip("[ ") if fmt == "avfoundation" else name.strip(), name.strip()))
        elif in_video and '"' in text and "(video)" in text:
            name = text.split('"')[1]
            devices.append(Device("camera", name, name))
    return devices


_REFRESH = threading.Lock()


def sound_devices(refresh: bool = False) -> list[dict]:
    """PortAudio's devices; ``refresh`` enumerates them afresh, so a sound server started after PortAudio was
    initialised is seen. Refreshing restarts PortAudio, which would end open streams: callers refresh only when
    what they look for is missing, before opening their own streams."""
    try:
        import sounddevice as sd
    except OSError as exc:  # PortAudio itself is missing
        raise DeviceError(
            f"sound devices cannot be used: {exc}", "install PortAudio (Debian: apt install libportaudio2)"
        ) from exc
    with _REFRESH:
        if refresh:
            sd._terminate()
            sd._initialize()
        return [dict(d) for d in sd.query_devices()]


def list_microphones() -> list[Device]:
    return [
        Device("microphone", d["name"], d["name"], f"{d['max_input_channels']} ch, {d['default_samplerate']:.0f} Hz")
        for d in sound_devices()
        if d["max_input_channels"] > 0
    ]


def list_speakers() -> list[Device]:
    return [
        Device("speaker", d["name"], d["name"], f"{d['max_output_channels']} ch (BlackHole / VB-CABLE go here)")
        for d in sound_devices()
        if d["max_output_channels"] > 0
    ]


def find_sound_device(name: str | None, kind: str) -> int | None:
    """Index of the device whose name is ``name`` or contains it (case-insensitive); None: the system default."""
    channels = "max_input_channels" if kind == "microphone" else "max_output_channels"

    def matches(devices: list[dict]) -> bool:
        names = [d["name"].lower() for d in devices if d[channels] > 0]
        return bool(names) and (name is None or any(name.lower() in n for n in names))

    devices = sound_devices()
    if not matches(devices):
        devices = sound_devices(refresh=True)
    candidates = [(i, d) for i, d in enumerate(devices) if d[channels] > 0]
    if name is None:
        if not candidates:
            raise DeviceError(
                f"no {kind} found on this machine",
                "connect one, or start PulseAudio / PipeWire; `rt-f2f camera --list-devices` shows what there is",
            )
        return None
    exact = [i for i, d in candidates if d["name"].lower() == name.lower()]
    partial = [i for i, d in candidates if name.lower() in d["name"].lower()]
    found = exact or partial
    if len(found) != 1:
        what = "matches several devices" if found else "is not a known device"
        names = ", ".join(repr(d["name"]) for _, d in candidates) or "none"
        raise DeviceError(f"{kind} {name!r} {what}", f"choose one of: {names} (see `rt-f2f camera --list-devices`)")
    return found[0]


def format_devices() -> str:
    """The --list-devices text: one device per line, grouped, with what to pass on the command line."""
    lines = []
    try:
        cameras = list_cameras()
    except RtF2fError as exc:
        cameras, lines = [], [f"cameras: cannot list ({exc.message})"]
    try:
        sound_devices(refresh=True)
        mics, speakers = list_microphones(), list_speakers()
    except RtF2fError as exc:
        mics, speakers = [], []
        lines.append(f"sound devices: cannot list ({exc.message})")
    for title, devices, flag in (
        ("cameras (--camera)", cameras, "--camera"),
        ("microphones (--microphone)", mics, "--microphone"),
        ("sound outputs (--virtual-mic on macOS / Windows)", speakers, "--virtual-mic"),
    ):
        lines.append(f"{title}:")
        if not devices:
            lines.append("  (none)")
        for d in devices:
            note = f"  [{d.note}]" if d.note else ""
            lines.append(f"  {flag} {d.name!r}: {d.label}{note}")
    return "\n".join(lines)
