"""Where output audio goes: a sound device (the virtual microphone's speaker side) or a WAV file.

Both receive the output samples with their position on the output clock (sample ``n`` plays at output pts
``start + n / rate``). The WAV file holds exactly the samples the device would be given, in order, so its sample
``n`` is output time ``n / rate`` from the start, the same origin as the Y4M file's frame ``k`` at ``k / fps``.

The device stream keeps to the output clock itself. PortAudio calls back for each buffer with the time its first
sample will reach the device (``outputBufferDacTime``); the callback plays the samples whose output pts is that
time, continuing sample by sample from the previous buffer, and re-aligns (counted) only when the continuous read
position is more than ``resync_s`` off the clock: after an underrun, a stall, or a device clock that drifts against
the system clock. So audio never creeps behind the picture, which the pacer sends at the same clock's times.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Protocol

import numpy as np

from .devices import DeviceError, find_sound_device


class AudioSink(Protocol):
    name: str
    ahead_s: float  # how long before its playout time the sink wants a sample

    def write(self, samples: np.ndarray, start_n: int) -> None: ...

    def close(self, end_n: int, ok: bool = True) -> None: ...


class WavSink:
    """``--wav PATH``: 16-bit PCM at the output rate, written beside its target and renamed at the end."""

    ahead_s = 0.0

    def __init__(self, path: str | os.PathLike, rate: int) -> None:
        import soundfile as sf

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._target = self.path.with_name(f".{self.path.name}.part")
        self._file = sf.SoundFile(str(self._target), "w", samplerate=rate, channels=1, subtype="PCM_16", format="WAV")
        self.name = f"wav:{self.path}"
        self.rate = rate
        self.written = 0
        self.gap_samples = 0  # zeros written where no output audio came (counted; should stay 0)

    def write(self, samples: np.ndarray, start_n: int) -> None:
        if start_n > self.written:
            self.gap_samples += start_n - self.written
            self._file.write(np.zeros(start_n - self.written, np.float32))
            self.written = start_n
        skip = self.written - start_n
        if skip < samples.size:
            self._file.write(np.clip(samples[skip:], -1.0, 1.0))
            self.written += samples.size - skip

    def close(self, end_n: int, ok: bool = True) -> None:
        if self._file.closed:
            return
        if ok and end_n > self.written:
            self.write(np.zeros(0, np.float32), end_n)
        self._file.close()
        if ok:
            os.replace(self._target, self.path)
        else:
            self._target.unlink(missing_ok=True)


class DeviceAudioSink:
    """A PortAudio output stream fed on the output clock (see the module docstring).

    ``device`` is a sounddevice index or name (None: the default output); ``env`` is set while the stream opens
    (``PULSE_SINK`` makes the ALSA ``pulse`` device play into the virtual microphone's sink). ``latency_s`` is the
    device buffer: a larger one rides out longer stalls of this process (the callback needs the GIL) and costs no
    sync, since samples are picked for the time they will be heard; it only needs them that much earlier (the core
    emits audio 0.3 s ahead at least).
    """

    # samples go to the callback's buffer as soon as the core emits them (up to lead + lookahead, 0.3-1.3 s, before
    # their time): it picks them by time, and the slack rides out event-loop stalls on a busy machine
    ahead_s = 30.0

    def __init__(
        self,
        device: int | str | None,
        rate: int,
        name: str,
        env: dict[str, str] | None = None,
        resync_s: float = 0.03,
        latency_s: float = 0.15,
    ) -> None:
        import sounddevice as sd

        self.name = name
        self.rate = rate
        self._origin_n: float | None = None  # wall time (monotonic) of sample 0, in samples; silence until set
        self._resync_n = int(resync_s * rate)
        self._lock = threading.Lock()
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (start sample, samples), in order
        self._cursor: int | None = None  # next sample to play
        self._short: deque[tuple[int, int, int]] = deque(maxlen=100_000)  # callbacks short of samples
        self.late_samples = 0  # samples whose time had passed before the device could play them (skipped)
        self.resyncs = 0
        self.late_s = 0.0  # how late the latest buffer plays its samples against the output clock
        self.callback_errors = 0
        saved = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        try:
            self.stream = sd.OutputStream(
                samplerate=rate, channels=1, dtype="float32", device=device, latency=latency_s, callback=self._callback
            )
            self.stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise DeviceError(
                f"cannot play into {name}: {exc}", "check the device with `rt-f2f camera --list-devices`"
            ) from exc
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        self.latency = float(self.stream.latency)

    def set_clock(self, origin: float, start_pts: float) -> None:
        """Sample 0 plays at wall time ``origin + start_pts`` (``time.monotonic``)."""
        self._origin_n = (origin + start_pts) * self.rate

    def write(self, samples: np.ndarray, start_n: int) -> None:
        with self._lock:
            self._chunks.append((start_n, np.asarray(samples, np.float32)))

    def _callback(self, outdata: np.ndarray, frames: int, times, status) -> None:
        if status.output_underflow:
            self.callback_errors += 1
        if self._origin_n is None:
            outdata.fill(0.0)
            return
        dac = times.outputBufferDacTime - times.currentTime + time.monotonic()  # on the monotonic clock
        due = int(round(dac * self.rate - self._origin_n))  # output sample that should play now
        if self._cursor is None or abs(self._cursor - due) > self._resync_n:
            if self._cursor is not None:
                self.resyncs += 1
                if due > self._cursor:
                    self.late_samples += due - self._cursor
            self._cursor = due
        out = outdata[:, 0]
        out.fill(0.0)
        end = self._cursor + frames
        filled = 0
        with self._lock:
            while self._chunks and self._chunks[0][0] + self._chunks[0][1].size <= self._cursor:
                self._chunks.popleft()  # already past
            for start, samples in self._chunks:
                if start >= end:
                    break
                lo, hi = max(start, self._cursor), min(start + samples.size, end)
                if hi > lo:
                    out[lo - self._cursor : hi - self._cursor] = samples[lo - start : hi - start]
                    filled += hi - lo
        if due >= 0:
            if filled < frames:
                self._short.append((self._cursor, frames, filled))
            self.late_s = (due - self._cursor) / self.rate
        self._cursor = end

    def close(self, end_n: int, ok: bool = True) -> None:
        stream, self.stream = getattr(self, "stream", None), None
        if stream is not None:
            stream.abort()
            stream.close()
        self.end_n = end_n

    end_n: int | None = None

    @property
    def underrun_samples(self) -> int:
        """Silence played because the sample was not there yet, up to the end of the output (the device plays on
        for a moment after the last sample, which is not a loss)."""
        end = self.end_n if self.end_n is not None else (self._cursor or 0)
        return sum(max(0, min(frames, end - start) - filled) for start, frames, filled in list(self._short))


def open_device_sink(device: str | None, rate: int, env: dict[str, str] | None = None) -> DeviceAudioSink:
    """A named sound output (``BlackHole 2ch``, ``CABLE Input``, ``pulse``) or the default one."""
    index = find_sound_device(device, "speaker")
    return DeviceAudioSink(index, rate, f"sound output {device or '(default)'}", env)
