"""Where output frames go: a virtual webcam (pyvirtualcam) or a YUV4MPEG2 file.

Both take RGB frames in output order, one per output slot, with their output pts. The Y4M file holds exactly the
frames the virtual camera would be sent, at the output rate; each frame header carries its output pts as an
``XPTS=`` parameter (Y4M readers such as FFmpeg skip unknown frame parameters), so a test can check timing frame by
frame. A regular file is written beside its target and renamed when the run ends: an error leaves nothing behind.
A FIFO or device is written in place.
"""

from __future__ import annotations

import os
import platform
import stat
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from .devices import DeviceError, linux_video_devices


class VideoSink(Protocol):
    name: str

    def send(self, image: np.ndarray, pts: float) -> None: ...

    def close(self, ok: bool = True) -> None: ...


def rgb_to_i420(image: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) with even sides -> planar YUV 4:2:0 (full range, as ``C420jpeg`` says), flattened."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2YUV_I420).reshape(-1)


def y4m_header(width: int, height: int, fps: float) -> bytes:
    rate = Fraction(fps).limit_denominator(1001)
    return f"YUV4MPEG2 W{width} H{height} F{rate.numerator}:{rate.denominator} Ip A1:1 C420jpeg\n".encode()


class Y4MWriter:
    """A YUV4MPEG2 stream of fixed-size RGB frames (sides must be even: 4:2:0 halves them)."""

    def __init__(self, out: BinaryIO, width: int, height: int, fps: float) -> None:
        if width % 2 or height % 2:
            raise DeviceError(f"frame size {width}x{height} has an odd side", "Y4M 4:2:0 needs even sides")
        self.out, self.width, self.height = out, width, height
        self.frames = 0
        out.write(y4m_header(width, height, fps))

    def write(self, image: np.ndarray, pts: float | None = None) -> None:
        if image.shape != (self.height, self.width, 3):
            raise DeviceError(
                f"frame of shape {image.shape} sent to a {self.width}x{self.height} stream", "keep one frame size"
            )
        self.out.write(b"FRAME\n" if pts is None else f"FRAME XPTS={pts:.6f}\n".encode())
        self.out.write(rgb_to_i420(image).tobytes())
        self.frames += 1


def _is_stream(path: Path) -> bool:
    """A FIFO or character device: written in place, never renamed."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


class Y4MSink:
    """``--y4m PATH``: the exact frames the virtual camera would get, with their output pts."""

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float) -> None:
        self.path = Path(path)
        self.name = f"y4m:{self.path}"
        self._stream = _is_stream(self.path)
        if self._stream:
            self._target = self.path
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._target = self.path.with_name(f".{self.path.name}.part")
        self._file = open(self._target, "wb")  # noqa: SIM115  (closed in close())
        self.writer = Y4MWriter(self._file, width, height, fps)

    @property
    def frames(self) -> int:
        return self.writer.frames

    def send(self, image: np.ndarray, pts: float) -> None:
        self.writer.write(image, pts)

    def close(self, ok: bool = True) -> None:
        if self._file.closed:
            return
        try:
            self._file.close()
        except BrokenPipeError:
            pass  # the reader of a FIFO went away first
        if not self._stream:
            if ok:
                os.replace(self._target, self.path)
            else:
                self._target.unlink(missing_ok=True)


def _v4l2_device(name: str | None) -> str | None:
    """``--virtual-camera`` on Linux: a /dev/videoN path, or the card label v4l2loopback was loaded with."""
    if name is None or name.startswith("/dev/"):
        return name
    for device in linux_video_devices():
        if device.label.lower() == name.lower():
            return device.name
    labels = ", ".join(f"{d.name} ({d.label})" for d in linux_video_devices()) or "none"
    raise DeviceError(
        f"virtual camera {name!r} is not a video device here",
        f"pass its /dev/videoN path or card_label; devices: {labels}",
    )


def virtual_camera_hint() -> str:
    if platform.system() == "Linux":
        return (
            "load v4l2loopback: `sudo modprobe v4l2loopback exclusive_caps=1 card_label='rt-f2f camera'` "
            "(Debian/Ubuntu: apt install v4l2loopback-dkms), or write frames to a file with --y4m PATH"
        )
    return "install OBS Studio and start its Virtual Camera once, or write frames to a file with --y4m PATH"


class VirtualCameraSink:
    """A webcam that call apps list (pyvirtualcam: v4l2loopback on Linux, OBS Virtual Camera on macOS/Windows).

    pyvirtualcam tries every registered backend; its combined error is turned into one line with what to do.
    """

    def __init__(self, device: str | None, width: int, height: int, fps: float) -> None:
        try:
            import pyvirtualcam
        except ImportError as exc:
            raise DeviceError(
                f"pyvirtualcam is not installed ({exc})", "pip install pyvirtualcam, or write frames with --y4m PATH"
            ) from exc

        wanted = _v4l2_device(device) if platform.system() == "Linux" else device
        try:
            self.camera = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB, device=wanted)
        except RuntimeError as exc:
            text = str(exc)
            if "No v4l2 loopback device found" in text:
                raise DeviceError(
                    "no virtual camera: the v4l2loopback kernel module is not loaded", virtual_camera_hint()
                ) from exc
            if "does not exist" in text or "not a v4l2loopback" in text.lower():
                raise DeviceError(f"virtual camera {wanted!r} does not exist", virtual_camera_hint()) from exc
            if "busy" in text.lower():
                raise DeviceError(
                    f"virtual camera {wanted!r} is in use by another program", "close it, or pick another device"
                ) from exc
            first = text.splitlines()[0] if text else type(exc).__name__
            raise DeviceError(f"the virtual camera could not be opened ({first})", virtual_camera_hint()) from exc
        self.name = f"virtual camera {self.camera.device} ({self.camera.backend})"
        self.frames = 0

    def send(self, image: np.ndarray, pts: float) -> None:
        self.camera.send(np.ascontiguousarray(image))
        self.frames += 1

    def close(self, ok: bool = True) -> None:
        self.camera.close()
