"""``rt-f2f camera``: the translated speaker as a virtual webcam and microphone, on one output clock.

No webcam, sound card or v4l2loopback exists here, so: the A/V sync of what would be sent is measured on the
``--y4m`` / ``--wav`` outputs with a test pattern whose flashes and beeps are known (``BeepEngine`` answers each
beep at its source time, so the answer must start with the flash's picture); the pyvirtualcam path runs through a
registered backend that writes Y4M into a FIFO read by another process; the virtual microphone is created for real
in a private PulseAudio daemon and recorded by ``parecord``. The end-to-end runs with the real speech engine and a
random-weight Wav2Lip (its mouths say nothing about lip-sync quality) are marked slow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from camera_fixtures import (
    ANSWER_HZ,
    FLASHES,
    FPS,
    PERIOD,
    RATE,
    BeepEngine,
    flash_starts,
    pulse_daemon,
    read_y4m,
    tone_starts,
    write_pattern,
    write_still_talk,
)

from rt_f2f.camera.command import run_camera
from rt_f2f.cli import build_parser, main
from rt_f2f.errors import RtF2fError

DELAY = 2.0
BT1359 = (-0.045, 0.125)


@pytest.fixture(scope="module")
def pattern(tmp_path_factory) -> Path:
    return write_pattern(tmp_path_factory.mktemp("camera") / "pattern.mkv")


def camera_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["camera", "--source", "en", "--target", "pt", "--quiet", *argv])


def heard_answers(wav: np.ndarray) -> list[float]:
    return tone_starts(wav)


def expected_flashes(seconds: float) -> list[float]:
    """Output times (from the first output moment, which shows source time 0) of every flash in ``seconds``."""
    out = []
    for loop in range(int(seconds // PERIOD) + 1):
        out += [loop * PERIOD + f for f in FLASHES if loop * PERIOD + f < seconds - 0.2]
    return out


def test_av_sync_on_y4m_and_wav_with_a_test_pattern(pattern: Path, tmp_path: Path) -> None:
    import soundfile as sf

    seconds = 9.0
    y4m, wav = tmp_path / "out.y4m", tmp_path / "out.wav"
    engine = BeepEngine()
    report = asyncio.run(
        run_camera(
            camera_args("--input", str(pattern), "--y4m", str(y4m), "--wav", str(wav), "--duration", str(seconds)),
            engine=engine,
        )
    )
    video = read_y4m(y4m.read_bytes())
    audio, rate = sf.read(str(wav), dtype="float32")
    # a 25 fps Y4M and a WAV of exactly the same length; each frame header carries its output pts (D + k / fps)
    assert rate == RATE and video.rate == FPS and (video.width, video.height) == (160, 120)
    assert len(video.frames) == round(seconds * FPS) and audio.size == round(seconds * RATE)
    assert video.pts == pytest.approx([DELAY + k / FPS for k in range(len(video.frames))], abs=1e-6)
    # output time 0 shows source time 0: every flash of every loop is where the pattern put it, D later
    flashes = flash_starts(video.frames)
    assert flashes == pytest.approx(expected_flashes(seconds), abs=0.5 / FPS)
    # every beep was answered, and each answer starts with its flash's picture (inside BT.1359), loop after loop
    answers = heard_answers(audio)
    heard_in_time = [c for c in engine.clauses if c.pts < seconds - 0.2]  # input runs D ahead of the output
    assert len(answers) == len(flashes) == len(heard_in_time)
    offsets = np.array(answers) - np.array(flashes)
    assert ((offsets >= BT1359[0]) & (offsets <= BT1359[1])).all(), offsets
    assert np.ptp(offsets) < 0.02  # no creep: the same offset at the end as at the start
    for start in answers:  # the answer is the double's 600 Hz tone
        clip = audio[int(start * RATE) : int((start + 0.1) * RATE)]
        spectrum = np.abs(np.fft.rfft(clip * np.hanning(clip.size)))
        assert abs(np.fft.rfftfreq(clip.size, 1 / RATE)[np.argmax(spectrum)] - ANSWER_HZ) < 20
    # the report says the same: A/V offset inside BT.1359 in every window of the run, nothing frozen or missing
    sync = report["av_offset"]
    assert sync["in_bt1359"] == 1.0 and sync["frames"] >= len(video.frames) - 2
    assert sync["over_time"] and all(BT1359[0] <= w["min_s"] and w["max_s"] <= BT1359[1] for w in sync["over_time"])
    out = report["output"]
    assert out["frames"] == len(video.frames) and out["audio_missing_s"] == 0
    assert report["stopped_by"] == "duration" and report["translation"].startswith("bipe")
    assert report["scheduler"]["clauses_dropped"] == 0 and report["lipsync"]["enabled"] is False
    assert not list(tmp_path.glob(".*.part"))
