"""Media and doubles for the ``rt-f2f camera`` tests: a flash-and-beep test pattern, a still-face talking video,
a speech-engine double that answers each beep with a beep of its own at the same source time, Y4M/WAV readers,
and a private PulseAudio daemon (no sound hardware is needed; the notes in ../shared/TESTING-NOTES.md say how).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from rt_f2f.frames import AudioChunk, Caption, Clause, SpeechChunk, Translation, Word

REPO = Path(__file__).resolve().parents[1]
RATE = 16000
FPS = 25
PERIOD = 4.0  # the pattern's length: it loops
FLASHES = (0.6, 1.6, 2.6, 3.2)  # source seconds where a white frame and a beep start together (on frame edges)
BEEP_S = 0.12
BEEP_HZ = 1000.0
ANSWER_HZ = 600.0  # the double's translated "speech"


def pattern_frame(index: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    """Grey, white during a flash (two frames from each flash start), the frame number in the top-left corner."""
    w, h = size
    t = (index % round(PERIOD * FPS)) / FPS
    flash = any(0 <= t - f < 2 / FPS - 1e-9 for f in FLASHES)
    image = np.full((h, w, 3), 240 if flash else 60, np.uint8)
    image[:8, :8] = (index * 7) % 256
    return image


def pattern_audio() -> np.ndarray:
    audio = np.zeros(int(PERIOD * RATE), np.float32)
    t = np.arange(int(BEEP_S * RATE)) / RATE
    for f in FLASHES:
        start = int(round(f * RATE))
        audio[start : start + t.size] = 0.5 * np.sin(2 * np.pi * BEEP_HZ * t)
    return audio


def write_pattern(path: Path) -> Path:
    """H.264 pictures + 16-bit PCM sound in Matroska (PCM: no codec delay to blur the sync being measured)."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "10"}
        sound = out.add_stream("pcm_s16le", rate=RATE)
        sound.layout = "mono"
        for i in range(round(PERIOD * FPS)):
            frame = av.VideoFrame.from_ndarray(pattern_frame(i), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        pcm = (pattern_audio() * 32767).astype(np.int16)
        for start in range(0, pcm.size, RATE // 10):
            frame = av.AudioFrame.from_ndarray(pcm[None, start : start + RATE // 10], format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE, start, Fraction(1, RATE)
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)
    return path


def write_still_talk(path: Path, seconds: float = 3.2) -> Path:
    """A still face (the astronaut photo, 256 x 256, every frame the same) saying "he was not an ill disposed young
    man" (examples/en_sample.wav): a webcam user who talks without moving."""
    from media_fixtures import face_photo

    from rt_f2f.audio import read_audio
    from rt_f2f.video import write_video

    audio = read_audio(REPO / "examples" / "en_sample.wav", RATE)[: int(seconds * RATE)]
    photo = face_photo(256)
    write_video(path, [photo] * int(seconds * FPS), float(FPS), audio=audio, audio_rate=RATE)
    return path


class BeepEngine:
    """Test double for ``SpeechEngine``: each beep it hears becomes a clause whose one word spans the beep, answered
    (once the beep has ended) by a 600 Hz beep at 24 kHz with the same source pts. Placed at source + D, the answer
    must start with the picture of the flash that went with the beep."""

    def __init__(self) -> None:
        self.clauses: list[Clause] = []
        self.loaded = False

    def load(self) -> None:
        self.loaded = True

    async def run(self, audio, live: bool = True) -> AsyncIterator[SpeechChunk | Caption]:
        onset: float | None = None
        quiet_since = 0.0
        async for chunk in audio:
            loud = np.flatnonzero(np.abs(chunk.samples) > 0.1)
            if loud.size and onset is None and chunk.pts + loud[0] / chunk.sample_rate - quiet_since > 0.3:
                onset = chunk.pts + loud[0] / chunk.sample_rate
            if loud.size:
                quiet_since = chunk.pts + loud[-1] / chunk.sample_rate
            if onset is not None and chunk.end > onset + BEEP_S + 0.02:
                clause = Clause("beep", (Word(" beep", onset, onset + BEEP_S),), "en", len(self.clauses))
                self.clauses.append(clause)
                yield Caption("bipe", "pt", onset, onset + BEEP_S, True, "translation")
                t = np.arange(int(BEEP_S * 24000)) / 24000
                answer = (0.5 * np.sin(2 * np.pi * ANSWER_HZ * t)).astype(np.float32)
                yield SpeechChunk(AudioChunk(answer, 24000, onset), Translation(clause, "bipe", "pt"), True, True)
                onset = None


@dataclass
class Y4M:
    width: int
    height: int
    rate: Fraction
    frames: list[np.ndarray]  # luma planes
    pts: list[float]  # from each FRAME header's XPTS


def read_y4m(data: bytes) -> Y4M:
    header, _, rest = data.partition(b"\n")
    fields = {f[:1]: f[1:] for f in header.split()[1:]}
    width, height = int(fields[b"W"]), int(fields[b"H"])
    num, den = (int(v) for v in fields[b"F"].split(b":"))
    size = width * height * 3 // 2
    frames, pts, pos = [], [], 0
    while pos < len(rest):
        line_end = rest.index(b"\n", pos)
        line = rest[pos:line_end].split()
        assert line[0] == b"FRAME", line
        pts += [float(p[5:]) for p in line[1:] if p.startswith(b"XPTS=")]
        body = rest[line_end + 1 : line_end + 1 + size]
        assert len(body) == size, "truncated frame"
        frames.append(np.frombuffer(body[: width * height], np.uint8).reshape(height, width))
        pos = line_end + 1 + size
    return Y4M(width, height, Fraction(num, den), frames, pts)


def flash_starts(frames: list[np.ndarray], fps: float = FPS) -> list[float]:
    """Seconds (frame index / fps) where a run of bright frames begins."""
    bright = [float(f[8:, 8:].mean()) > 150 for f in frames]
    return [i / fps for i, b in enumerate(bright) if b and (i == 0 or not bright[i - 1])]


def tone_starts(samples: np.ndarray, rate: int = RATE, gap: float = 0.3) -> list[float]:
    """Seconds where sound starts after at least ``gap`` s of silence (sample-exact: the first loud sample)."""
    loud = np.flatnonzero(np.abs(samples) > 0.05)
    starts, last = [], -1e9
    for i in loud:
        if (i - last) / rate > gap:
            starts.append(i / rate)
        last = i
    return starts


# -- a private PulseAudio daemon ----------------------------------------------------------------------------------


@dataclass
class Pulse:
    runtime: Path
    env: dict[str, str]

    def pactl(self, *args: str) -> str:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, check=True).stdout

    def names(self, kind: str) -> list[str]:
        return [line.split("\t")[1] for line in self.pactl("list", "short", kind).splitlines() if "\t" in line]


def pulse_daemon(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pulse]:
    """A PulseAudio daemon of this test's own (its own XDG_RUNTIME_DIR), reachable from this process and its
    children; stopped and its folder removed afterwards."""
    if not (shutil.which("pulseaudio") and shutil.which("pactl") and shutil.which("parecord")):
        pytest.skip("PulseAudio is not installed (apt install pulseaudio pulseaudio-utils)")
    runtime = folder / "xdg"
    runtime.mkdir(mode=0o700)
    config = folder / "pulse.pa"
    config.write_text(
        "load-module module-native-protocol-unix\n"
        "load-module module-null-sink sink_name=speakers\n"
        "set-default-sink speakers\n"
    )
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(folder)}
    env.pop("PULSE_SERVER", None)
    daemon = subprocess.Popen(
        ["pulseaudio", "-n", "-F", str(config), "--exit-idle-time=-1", "--daemonize=no", "--log-target=stderr"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    pulse = Pulse(runtime, env)
    deadline = time.monotonic() + 15
    while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
        if daemon.poll() is not None or time.monotonic() > deadline:
            daemon.kill()
            pytest.skip(f"PulseAudio did not start: {daemon.stderr.read().decode()[-300:]}")
        time.sleep(0.1)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.delenv("PULSE_SERVER", raising=False)
    try:
        yield pulse
    finally:
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        daemon.stderr.close()
