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
import signal
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
    sched = report["scheduler"]
    why = {k: sched[k] for k in ("video_repeated", "video_dropped", "drift_ppm", "drift_correction_s")}
    assert flashes == pytest.approx(expected_flashes(seconds), abs=0.5 / FPS), (flashes, why, report["output"])
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
    # the report says the same: A/V offset inside BT.1359 in every window of the run, no audio missing
    sync = report["av_offset"]
    assert sync["in_bt1359"] == 1.0 and sync["frames"] >= 0.9 * len(video.frames)  # the rest froze (counted)
    assert sync["over_time"] and all(BT1359[0] <= w["min_s"] and w["max_s"] <= BT1359[1] for w in sync["over_time"])
    out = report["output"]
    assert out["frames"] == len(video.frames) and out["audio_missing_s"] == 0
    assert report["stopped_by"] == "duration" and report["translation"].startswith("bipe")
    assert report["scheduler"]["clauses_dropped"] == 0 and report["lipsync"]["enabled"] is False
    assert not list(tmp_path.glob(".*.part"))


# -- the virtual camera through pyvirtualcam --------------------------------------------------------------------

READER = """
import json, sys
import av
frames = []
with av.open(sys.argv[1], format="yuv4mpegpipe") as c:
    s = c.streams.video[0]
    rate = float(s.average_rate or s.guessed_rate)
    for f in c.decode(s):
        frames.append(float(f.to_ndarray(format="gray")[8:, 8:].mean()))
json.dump({"rate": rate, "width": s.codec_context.width, "height": s.codec_context.height, "means": frames},
          open(sys.argv[2], "w"))
"""


class FifoCamera:
    """A pyvirtualcam backend (the interface of ``pyvirtualcam.Backend``) that writes YUV4MPEG2 into a FIFO:
    what a v4l2loopback device would carry, read back by another process."""

    fifo: Path | None = None

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **kw) -> None:
        from pyvirtualcam.util import encode_fourcc

        from rt_f2f.camera.video_out import Y4MWriter

        if fourcc != encode_fourcc("raw ") or self.fifo is None:
            raise RuntimeError("FifoCamera takes RGB frames and needs a FIFO")
        self.width, self.height = width, height
        self.file = open(self.fifo, "wb")  # noqa: SIM115  (blocks until the reader opens it)
        self.writer = Y4MWriter(self.file, width, height, fps)

    def send(self, frame: np.ndarray) -> None:
        self.writer.write(frame.reshape(self.height, self.width, 3))

    def close(self) -> None:
        self.file.close()

    def device(self) -> str:
        return str(self.fifo)

    def native_fourcc(self) -> None:
        return None


@pytest.mark.parametrize("via", ["pyvirtualcam", "y4m-fifo"])
def test_virtual_camera_through_a_registered_pyvirtualcam_backend(
    via: str, pattern: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyvirtualcam with a registered backend (what v4l2loopback gets), and ``--y4m FIFO`` (for a reader such as
    ffmpeg feeding a device): another process reads every frame, on time."""
    import pyvirtualcam
    import pyvirtualcam.camera

    fifo, seen = tmp_path / "camera.fifo", tmp_path / "seen.json"
    os.mkfifo(fifo)
    monkeypatch.setattr(FifoCamera, "fifo", fifo)
    monkeypatch.setitem(pyvirtualcam.camera.BACKENDS, "test-fifo", FifoCamera)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(fifo), str(seen)])
    try:
        seconds = 6.0
        argv = ["--input", str(pattern), "--wav", str(tmp_path / "a.wav"), "--duration", str(seconds)]
        if via == "y4m-fifo":
            argv += ["--y4m", str(fifo)]
        report = asyncio.run(run_camera(camera_args(*argv), engine=BeepEngine()))
        assert reader.wait(30) == 0
    finally:
        if reader.poll() is None:
            reader.kill()
    got = json.loads(seen.read_text())
    # the other process got every frame the camera was sent, at 25 fps, with the flashes where the pattern has them
    name = f"virtual camera {fifo} (test-fifo)" if via == "pyvirtualcam" else f"y4m:{fifo}"
    assert report["outputs"][0] == name and fifo.exists()
    assert (got["rate"], got["width"], got["height"]) == (25.0, 160, 120)
    assert len(got["means"]) == report["output"]["frames"] == round(seconds * FPS)
    bright = [m > 150 for m in got["means"]]
    starts = [i / FPS for i, b in enumerate(bright) if b and (i == 0 or not bright[i - 1])]
    assert starts == pytest.approx(expected_flashes(seconds), abs=0.5 / FPS)
    # frames leave a virtual camera on time: the report's offset includes how late each one was sent. On a shared
    # 2-core machine the event loop (and the FIFO's reader) can stall for a few frames; a stall shows up here, so the
    # bound is on most of the run, and the median is inside a frame
    sync = report["av_offset"]
    assert sync["in_bt1359"] >= 0.9 and abs(sync["p50_s"]) < 0.02, sync
    # no creep: frames leave at their time give or take the stalls (a FIFO reader starved at load 24 held the p95 at
    # 0.18 s); a pacer falling behind would be seconds late by the end
    assert report["output"]["frame_send_late_p95_s"] < 0.5, report["output"]
    assert all(w["max_s"] - w["min_s"] < 0.5 for w in sync["over_time"]), sync


def test_no_v4l2loopback_is_one_clear_error_and_leaves_nothing(pattern: Path, tmp_path: Path, capsys) -> None:
    wav = tmp_path / "a.wav"
    rc = main(["camera", "--source", "en", "--target", "pt", "--input", str(pattern), "--wav", str(wav)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "v4l2loopback kernel module is not loaded" in err and "exclusive_caps=1" in err
    assert "Traceback" not in err and not list(tmp_path.iterdir())


def test_unknown_devices_are_clear_errors(pattern: Path, tmp_path: Path, capsys) -> None:
    for argv, said in (
        (["--camera", "/dev/video-none", "--y4m", str(tmp_path / "v.y4m")], "no camera /dev/video-none"),
        (["--input", str(pattern), "--virtual-camera", "Nonesuch Cam"], "virtual camera 'Nonesuch Cam'"),
        (["--input", str(tmp_path / "missing.mp4")], "no such file"),
        (["--input", str(pattern), "--duration", "-1"], "--duration -1"),
    ):
        rc = main(["camera", "--source", "en", "--target", "pt", *argv])
        err = capsys.readouterr().err
        assert rc == 2 and said in err and "hint:" in err and "Traceback" not in err, (argv, err)
    assert not list(tmp_path.iterdir())


def test_list_devices_and_help_are_instant(capsys) -> None:
    assert main(["camera", "--list-devices"]) == 0
    out = capsys.readouterr().out
    assert "cameras (--camera):" in out and "microphones (--microphone):" in out
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rt_f2f", "camera", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--virtual-mic" in done.stdout
    assert not any(f"| {heavy}" in done.stderr for heavy in ("torch", "sounddevice", "pyvirtualcam", "av"))


# -- the virtual microphone in a real PulseAudio daemon ------------------------------------------------------------


@pytest.fixture
def pulse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    yield from pulse_daemon(tmp_path, monkeypatch)


def record_source(pulse, name: str, out: Path, appear_s: float = 60.0) -> subprocess.Popen | None:
    """Wait for source ``name`` to appear, then record it with parecord (16 kHz mono WAV)."""
    deadline = time.monotonic() + appear_s
    while name not in pulse.names("sources"):
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
    return subprocess.Popen(
        ["parecord", f"--device={name}", "--rate=16000", "--channels=1", "--format=s16le", "--file-format=wav",
         "--latency-msec=20", str(out)],
        env=pulse.env,
    )  # fmt: skip


def test_virtual_microphone_is_created_heard_and_removed(pulse, pattern: Path, tmp_path: Path) -> None:
    import concurrent.futures

    import soundfile as sf

    name, recording = "rt-f2f-test-mic", tmp_path / "heard.wav"
    before = pulse.pactl("list", "short", "modules")
    seconds = 8.0
    args = camera_args("--input", str(pattern), "--y4m", str(tmp_path / "v.y4m"), "--virtual-mic", name,
                       "--duration", str(seconds))  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        recorder = pool.submit(record_source, pulse, name, recording)
        report = asyncio.run(run_camera(args, engine=BeepEngine()))
        proc = recorder.result()
    assert proc is not None, "the virtual microphone never appeared in `pactl list sources`"
    proc.terminate()
    proc.wait(10)
    # gone afterwards: no source, no sink, the module list as it was
    assert name not in pulse.names("sources") and f"{name}-sink" not in pulse.names("sinks")
    assert pulse.pactl("list", "short", "modules") == before
    assert report["virtual_devices_created_and_removed"] == [f"PulseAudio source {name} (null sink {name}-sink)"]
    # another process heard the answers through it, spaced as the pattern spaced the beeps (one clock, no creep)
    heard, rate = sf.read(str(recording), dtype="float32")
    residuals, missed = spacing_against(tone_starts(heard, rate), expected_flashes(seconds))
    why = (residuals, missed, report["devices"], report["scheduler"]["clauses_dropped"])
    assert np.abs(residuals).max() < 0.03 and missed <= 1, why
    device = report["devices"][0]
    assert device["name"] == f"virtual microphone {name}" and device["resyncs"] <= 2 and device["underrun_s"] < 0.5
    assert report["av_offset"]["in_bt1359"] >= 0.95


def spacing_against(starts: list[float], flashes: list[float]) -> tuple[np.ndarray, int]:
    """A recording starts at an unknown moment: align its first sound to the flash that fits best, then return each
    sound's distance from the nearest flash (the spacing error) and how many flashes after that one went unheard."""
    starts_a, flashes_a = np.array(starts), np.array(flashes)
    assert starts_a.size >= 2, f"only {starts_a.size} sounds heard"

    def residuals(i: int) -> np.ndarray:
        shifted = starts_a - starts_a[0] + flashes_a[i]
        return np.array([shifted_t - flashes_a[np.argmin(np.abs(flashes_a - shifted_t))] for shifted_t in shifted])

    best = min(range(flashes_a.size), key=lambda i: np.abs(residuals(i)).max())
    last = starts_a[-1] - starts_a[0] + flashes_a[best]
    due = int(np.count_nonzero((flashes_a >= flashes_a[best]) & (flashes_a <= last + 1e-6)))
    return residuals(best), due - starts_a.size


def test_no_sound_server_is_one_clear_error_and_leaves_nothing(
    pattern: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    empty = tmp_path / "xdg"
    empty.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(empty))
    monkeypatch.setenv("PULSE_SERVER", f"unix:{empty}/none")
    out = tmp_path / "out"
    rc = main(["camera", "--source", "en", "--target", "pt", "--input", str(pattern), "--y4m", str(out / "v.y4m")])
    err = capsys.readouterr().err
    assert rc == 2 and "no PulseAudio or PipeWire server is running" in err and "--wav" in err
    assert not list(out.iterdir())  # the Y4M opened before the microphone failed is gone


def interrupt_after(seconds: float) -> None:
    """Ctrl-C this process ``seconds`` from now (the session's signal handler turns it into a clean stop)."""
    asyncio.get_running_loop().call_later(seconds, os.kill, os.getpid(), signal.SIGINT)


def test_ctrl_c_stops_cleanly_with_files_of_equal_length(pattern: Path, tmp_path: Path, capsys) -> None:
    import soundfile as sf

    y4m, wav = tmp_path / "out.y4m", tmp_path / "out.wav"
    args = build_parser().parse_args(
        ["camera", "--source", "en", "--target", "pt", "--input", str(pattern), "--y4m", str(y4m), "--wav", str(wav)]
    )

    async def run() -> dict:
        interrupt_after(4.5)
        return await run_camera(args, engine=BeepEngine())

    report = asyncio.run(run())
    assert report["stopped_by"] == "Ctrl-C"
    video = read_y4m(y4m.read_bytes())
    audio, rate = sf.read(str(wav), dtype="float32")
    assert len(video.frames) == report["output"]["frames"] > 25 and audio.size == len(video.frames) * rate // FPS
    assert report["output"]["audio_missing_s"] == 0
    # the status line came once a second while it ran
    status = [line for line in capsys.readouterr().err.splitlines() if line.startswith("out ")]
    assert len(status) >= 3 and all("fps" in line and "delay 2.00 s" in line and "A/V" in line for line in status)


class FailingEngine(BeepEngine):
    """Breaks two seconds into the run, as a model that runs out of memory would."""

    async def run(self, audio, live: bool = True):
        async for item in super().run(audio):
            yield item
            if item.pts > 1.0:
                raise RuntimeError("the translator broke")


def test_ctrl_c_and_errors_remove_the_virtual_microphone(pulse, pattern: Path, tmp_path: Path) -> None:
    name = "rt-f2f-test-mic"
    args = camera_args("--input", str(pattern), "--y4m", str(tmp_path / "v.y4m"), "--virtual-mic", name)

    async def interrupted() -> dict:
        interrupt_after(3.0)
        return await run_camera(args, engine=BeepEngine())

    report = asyncio.run(interrupted())
    assert report["stopped_by"] == "Ctrl-C" and report["output"]["frames"] > 0
    assert name not in pulse.names("sources") and f"{name}-sink" not in pulse.names("sinks")
    assert (tmp_path / "v.y4m").exists()
    (tmp_path / "v.y4m").unlink()
    # an error mid-run: raised after the microphone is removed and the half-written Y4M deleted
    with pytest.raises(RuntimeError, match="the translator broke"):
        asyncio.run(run_camera(args, engine=FailingEngine()))
    assert name not in pulse.names("sources") and f"{name}-sink" not in pulse.names("sinks")
    assert not list(tmp_path.glob("*.y4m")) and not list(tmp_path.glob(".*.part"))


# -- end to end with the real speech engine and a random-weight Wav2Lip (slow) ---------------------------------------


@pytest.fixture(scope="module")
def still_talk(tmp_path_factory) -> dict[str, Path]:
    from lipsync_fixtures import shared_checkpoint

    folder = tmp_path_factory.mktemp("talk")
    return {"video": write_still_talk(folder / "talk.mp4"), "checkpoint": shared_checkpoint()}


def portuguese_words(whisper_base, samples_16k: np.ndarray) -> str:
    return " ".join(w.text for w in whisper_base.transcribe(samples_16k, language="pt").words).lower()


@pytest.mark.slow
def test_still_face_talk_to_y4m_and_wav(still_talk, tmp_path: Path, whisper_base, capsys) -> None:
    """The issue's "done when": `rt-f2f camera --input talk.mp4 --source en --target pt --y4m out.y4m --wav out.wav
    --duration 20` writes a 25 fps Y4M and a WAV of the same length, heard back as Portuguese, with the A/V offset
    inside BT.1359 throughout."""
    import soundfile as sf

    y4m, wav, report_path = tmp_path / "out.y4m", tmp_path / "out.wav", tmp_path / "r.json"
    rc = main(
        ["camera", "--input", str(still_talk["video"]), "--source", "en", "--target", "pt", "--y4m", str(y4m),
         "--wav", str(wav), "--duration", "20", "--checkpoint_path", str(still_talk["checkpoint"]),
         "--report", str(report_path)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "out " in captured.err and "fps" in captured.err and "mouths" in captured.err  # the status line
    report = json.loads(report_path.read_text())
    video = read_y4m(y4m.read_bytes())
    audio, rate = sf.read(str(wav), dtype="float32")
    assert video.rate == 25 and len(video.frames) == 500 and audio.size / rate == len(video.frames) / 25
    # the engine translated the sentence in time (a machine too loaded for real time fails here, not in Whisper)
    assert "jovem" in report["translation"].lower() and report["scheduler"]["clauses_placed"] >= 1, report["scheduler"]
    sync = report["av_offset"]
    assert sync["in_bt1359"] == 1.0 and sync["frames"] > 400
    assert all(BT1359[0] <= w["min_s"] and w["max_s"] <= BT1359[1] for w in sync["over_time"])
    assert report["lipsync"]["enabled"] and report["lipsync"]["frames_rendered"] > 0
    assert all(p["delay_s"] <= 20.0 for p in report["output_delay"]["over_time"])
    assert rate == 16000
    heard = portuguese_words(whisper_base, audio)
    assert "jovem" in heard, heard
    print(json.dumps({k: report[k] for k in ("output", "av_offset", "lipsync", "translation")}, indent=1))


@pytest.mark.slow
def test_virtual_microphone_carries_portuguese_speech(pulse, still_talk, tmp_path: Path, whisper_base) -> None:
    """`--virtual-mic rt-f2f-mic` with a PulseAudio daemon running: `pactl list sources` shows it, another process
    records Portuguese speech from it, and it is gone after the command ends."""
    import soundfile as sf

    recording = tmp_path / "heard.wav"
    command = subprocess.Popen(
        [sys.executable, "-m", "rt_f2f", "camera", "--input", str(still_talk["video"]), "--source", "en",
         "--target", "pt", "--y4m", str(tmp_path / "v.y4m"), "--virtual-mic", "rt-f2f-mic", "--duration", "16",
         "--quiet", "--report", str(tmp_path / "r.json")],
        env=pulse.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    try:
        recorder = record_source(pulse, "rt-f2f-mic", recording, appear_s=120)
        assert recorder is not None, command.stderr.read() if command.poll() is not None else "no source appeared"
        out, err = command.communicate(timeout=240)
    finally:
        if command.poll() is None:
            command.kill()
    recorder.terminate()
    recorder.wait(10)
    assert command.returncode == 0, err
    assert "removed PulseAudio source rt-f2f-mic" in out
    assert "rt-f2f-mic" not in pulse.names("sources") and "rt-f2f-mic-sink" not in pulse.names("sinks")
    report = json.loads((tmp_path / "r.json").read_text())
    assert "jovem" in report["translation"].lower(), ("the engine translated too little in time", report["scheduler"])
    heard, rate = sf.read(str(recording), dtype="float32")
    assert rate == 16000 and heard.size > 10 * rate
    # Whisper hears words of the translation ("Ele não era um jovem ...") when told it is Portuguese. On a machine
    # this loaded the live stream loses audio (counted in the report as underruns and late samples), so one word of
    # the sentence is asked for, not all of it. Whisper base's own language guess wavers on the synthetic voice
    # (one CI run: Italian first, on "e l'inau era un ... joven"; see browser_fixtures.likeliest_languages), so it
    # is asked only to rule out the speaker's own English coming through (which it takes for English at > 0.9)
    _, _, ranked = whisper_base.model.detect_language(heard)
    assert dict(ranked).get("en", 0.0) < 0.5, ranked[:5]
    words = set(portuguese_words(whisper_base, heard).replace(".", " ").replace(",", " ").split())
    assert words & {"ele", "não", "era", "jovem"}, words
    device = report["devices"][0]
    assert device["name"] == "virtual microphone rt-f2f-mic" and device["underrun_s"] >= 0


def test_virtual_microphone_plays_each_answer_at_its_frame_time(pulse, pattern: Path, tmp_path: Path) -> None:
    """A/V sync at the devices: a recorder in this process reads the virtual microphone with PortAudio's capture
    timestamps (on the monotonic clock); each answer must be heard when its flash frame is sent, ``origin + D +
    flash``, inside BT.1359, from the first answer to the last."""
    import threading

    import sounddevice as sd

    from rt_f2f.camera.devices import find_sound_device

    name, seconds = "rt-f2f-sync-mic", 10.0
    args = camera_args("--input", str(pattern), "--y4m", str(tmp_path / "v.y4m"), "--virtual-mic", name,
                       "--duration", str(seconds))  # fmt: skip
    heard: list[tuple[float, np.ndarray]] = []  # (monotonic time of the first sample, samples)

    def callback(indata, frames, times, status) -> None:
        heard.append((times.inputBufferAdcTime - times.currentTime + time.monotonic(), indata[:, 0].copy()))

    streams: list = []

    def record() -> None:
        deadline = time.monotonic() + 30
        while name not in pulse.names("sources") and time.monotonic() < deadline:
            time.sleep(0.02)
        os.environ["PULSE_SOURCE"] = name  # the ALSA pulse device records from it
        try:
            stream = sd.InputStream(samplerate=RATE, channels=1, dtype="float32", latency=0.05, callback=callback,
                                    device=find_sound_device("pulse", "microphone"))  # fmt: skip
            stream.start()
            streams.append(stream)
        finally:
            del os.environ["PULSE_SOURCE"]

    recorder = threading.Thread(target=record)
    recorder.start()
    report = asyncio.run(run_camera(args, engine=BeepEngine()))
    recorder.join()
    assert streams, "the recorder could not open the virtual microphone"
    streams[0].stop()
    streams[0].close()
    onsets = []
    quiet_until = -1.0
    for wall, samples in heard:
        loud = np.flatnonzero(np.abs(samples) > 0.05)
        for i in loud:
            t = wall + i / RATE
            if t > quiet_until:
                onsets.append(t)
            quiet_until = t + 0.3
    start = report["clock"]["origin_monotonic_s"] + DELAY
    listening = heard[0][0] + 0.1 if heard else float("inf")  # the recorder opens a moment after the source exists
    expected = [start + f for f in expected_flashes(seconds) if start + f > listening]
    assert onsets and len(expected) >= 5, (onsets, expected)
    offsets = np.array([min(onsets, key=lambda t: abs(t - e)) - e for e in expected])
    why = {"offsets_ms": np.round(offsets * 1000, 1).tolist(), "device": report["devices"][0],
           "scheduler": {k: report["scheduler"][k] for k in ("clauses_dropped", "clauses_late", "underruns")}}  # fmt: skip
    inside = (offsets >= BT1359[0]) & (offsets <= BT1359[1])
    # a stall of this busy machine (load 10-18 while these tests were written) may cost one answer its time
    assert inside.mean() >= 0.8, why
    assert abs(np.median(offsets)) < 0.045, why


# -- camera + microphone capture ----------------------------------------------------------------------------------


def play_camera(fifo: Path, seconds: float) -> None:
    """Stream the pattern's frames into a Y4M FIFO at 25 fps, as a camera delivers them, then hang up."""
    from camera_fixtures import pattern_frame

    from rt_f2f.camera.video_out import Y4MWriter

    out = open(fifo, "wb")  # noqa: SIM115  (blocks until the camera reader opens it)
    try:
        writer = Y4MWriter(out, 160, 120, FPS)
        start = time.monotonic()
        for i in range(int(seconds * FPS)):
            time.sleep(max(0.0, start + i / FPS - time.monotonic()))
            writer.write(pattern_frame(i))
            out.flush()
        out.close()
    except BrokenPipeError:
        pass  # the run ended first and closed its end


@pytest.mark.slow  # 20-40 s on the shared machine
def test_camera_and_microphone_capture(pulse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The capture path: frames from an FFmpeg live input (a Y4M FIFO standing in for v4l2, through the same
    reader thread) and sound from a PulseAudio source through sounddevice; then the camera hangs up mid-run, which
    is one clear error with the outputs removed."""
    import threading

    import soundfile as sf
    from camera_fixtures import pattern_audio

    fifo, pcm = tmp_path / "camera.y4m", tmp_path / "speech.raw"
    os.mkfifo(fifo)
    pcm.write_bytes((np.tile(pattern_audio(), 4) * 32767).astype("<i2").tobytes())
    monkeypatch.setenv("PULSE_SOURCE", "speakers.monitor")  # the ALSA pulse device records what `speakers` plays
    player = subprocess.Popen(
        ["pacat", "--playback", "--device=speakers", "--format=s16le", "--rate=16000", "--channels=1", "--raw",
         str(pcm)], env=pulse.env,
    )  # fmt: skip
    camera = threading.Thread(target=play_camera, args=(fifo, 10.0))
    camera.start()
    y4m, wav = tmp_path / "out.y4m", tmp_path / "out.wav"
    argv = ["--camera", str(fifo), "--camera-format", "yuv4mpegpipe", "--microphone", "pulse", "--y4m", str(y4m),
            "--wav", str(wav)]  # fmt: skip
    try:
        report = asyncio.run(run_camera(camera_args(*argv, "--duration", "4"), engine=BeepEngine()))
    finally:
        camera.join(30)
        player.kill()
        player.wait()
    video, (audio, rate) = read_y4m(y4m.read_bytes()), sf.read(str(wav), dtype="float32")
    assert len(video.frames) == 100 and audio.size == 4 * rate and report["stopped_by"] == "duration"
    assert report["input"]["name"].startswith(f"camera {fifo} + microphone pulse")
    assert report["input"]["frames"] > 100 and report["input"]["audio_s"] > 4
    assert len(flash_starts(video.frames)) >= 3
    assert len(tone_starts(audio)) >= 2  # beeps heard through the microphone, answered on the output
    # the camera hangs up: one clear error, the half-written outputs removed
    os.unlink(fifo)
    os.mkfifo(fifo)
    camera = threading.Thread(target=play_camera, args=(fifo, 1.5))
    camera.start()
    y4m.unlink()
    wav.unlink()
    rc = main(["camera", "--source", "en", "--target", "pt", "--quiet", *argv])
    camera.join(30)
    err = capsys.readouterr().err
    assert rc == 2 and f"camera {fifo} stopped sending frames" in err, err
    assert not y4m.exists() and not wav.exists() and not list(tmp_path.glob(".*.part"))


GUM_PAGE = """<!doctype html><meta charset="utf-8"><title>mic</title><script>
window.record = async (label, seconds) => {
  await navigator.mediaDevices.getUserMedia({ audio: true }).then((s) => s.getTracks().forEach((t) => t.stop()));
  const devices = await navigator.mediaDevices.enumerateDevices();
  const mic = devices.find((d) => d.kind === "audioinput" && d.label.includes(label));
  if (!mic) return { error: "no input labelled " + label, labels: devices.map((d) => d.kind + ":" + d.label) };
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { deviceId: { exact: mic.deviceId },
    echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  const ctx = new AudioContext();
  const node = ctx.createScriptProcessor(4096, 1, 1);
  const kept = [];
  node.onaudioprocess = (e) => { kept.push(Float32Array.from(e.inputBuffer.getChannelData(0))); };
  ctx.createMediaStreamSource(stream).connect(node);
  node.connect(ctx.destination);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  stream.getTracks().forEach((t) => t.stop());
  const all = kept.flatMap((b) => Array.from(b));
  return { rate: ctx.sampleRate, label: mic.label, samples: all.filter((_, i) => i % 3 === 0) };
};
</script>"""


@pytest.mark.slow
@pytest.mark.browser
def test_chromium_hears_the_virtual_microphone(pulse, pattern: Path, tmp_path: Path) -> None:
    """A call app's view: headless Chromium lists the virtual microphone by name, opens it with getUserMedia and
    hears the answers, spaced as the beeps were."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Chromium is not installed (apt install chromium)")
    from playwright.async_api import async_playwright

    name = "rt-f2f-gum-mic"
    args = camera_args("--input", str(pattern), "--y4m", str(tmp_path / "v.y4m"), "--virtual-mic", name,
                       "--duration", "16")  # fmt: skip

    async def listen() -> dict:
        while name not in await asyncio.to_thread(pulse.names, "sources"):
            await asyncio.sleep(0.05)
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=str(chromium), env=pulse.env,
                args=["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                      "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required"],
            )  # fmt: skip
            try:
                page = await browser.new_page()
                await page.route(
                    "http://localhost/", lambda route: route.fulfill(body=GUM_PAGE, content_type="text/html")
                )
                await page.goto("http://localhost/")  # a secure context without a server
                return await page.evaluate("([label, s]) => window.record(label, s)", [name, 8])
            finally:
                await browser.close()

    async def both() -> tuple[dict, dict]:
        return await asyncio.gather(run_camera(args, engine=BeepEngine()), listen())

    report, got = asyncio.run(both())
    assert "error" not in got, got
    assert got["label"].startswith(name)
    heard = np.array(got["samples"], np.float32)
    rate = got["rate"] / 3
    starts = tone_starts(heard, int(rate))
    assert len(starts) >= 4 and heard.size > 6 * rate, starts
    # what it hears is the answers (600 Hz), not the pattern's beeps (1 kHz). Their spacing is checked at the
    # PortAudio recorder above: headless Chromium's capture on a machine this busy drops and repeats buffers
    pitches = []
    for start in starts:
        clip = heard[int(start * rate) : int((start + 0.08) * rate)]
        spectrum = np.abs(np.fft.rfft(clip * np.hanning(clip.size)))
        pitches.append(float(np.fft.rfftfreq(clip.size, 1 / rate)[np.argmax(spectrum)]))
    assert abs(np.median(pitches) - ANSWER_HZ) < 60, pitches
    assert name not in pulse.names("sources") and report["stopped_by"] == "duration"
