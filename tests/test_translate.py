"""``rt-f2f translate``: a talking video in, a Portuguese lip-synced MP4 with captions and a bounded delay out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rt_f2f.cli import main

REPO = Path(__file__).resolve().parents[1]
SECONDS = 3.2  # "he was not an ill disposed young man"


@pytest.fixture(scope="module")
def talking(tmp_path_factory) -> dict[str, Path]:
    from lipsync_fixtures import write_random_checkpoint
    from media_fixtures import moving_frames

    from rt_f2f.audio import read_audio
    from rt_f2f.video import write_video

    folder = tmp_path_factory.mktemp("translate")
    audio = read_audio(REPO / "examples" / "en_sample.wav", 16000)[: int(SECONDS * 16000)]
    video = write_video(folder / "talk.mp4", moving_frames(int(SECONDS * 25), 256), 25.0, audio=audio)
    assert video == int(SECONDS * 25)
    return {
        "video": folder / "talk.mp4",
        "checkpoint": write_random_checkpoint(folder / "wav2lip.pth"),
        "still": folder / "still.png",
    }


def _streams(path: Path) -> dict[str, tuple[int, float]]:
    import av

    with av.open(str(path)) as c:
        out = {}
        for s in c.streams:
            n = sum(1 for p in c.demux(s) if p.size) if s.type == "video" else 0
            c.seek(0)
            out[s.type] = (n, float(s.duration * s.time_base))
        return out


def test_translate_writes_lipsynced_portuguese_with_captions(talking, tmp_path: Path, whisper_base, capsys) -> None:
    out, report_path = tmp_path / "out.mp4", tmp_path / "report.json"
    rc = main(
        ["translate", str(talking["video"]), "--source", "en", "--target", "pt", "--outfile", str(out),
         "--checkpoint_path", str(talking["checkpoint"]), "--report", str(report_path), "--max-delay", "4.0"]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert "(computation-unaware" in capsys.readouterr().out  # a fast run's latency is not what a listener gets
    report = json.loads(report_path.read_text())
    # nothing said is lost; speech later than --max-delay is kept and recorded as over the bound
    sched = report["scheduler"]
    assert sched["clauses_dropped"] == 0 and sched["clauses_placed"] >= 1
    late = [p for p in report["output_delay"]["over_time"] if p["delay_s"] > 4.0 + 1e-6]
    assert not late or sched["clauses_over_bound"] >= 1
    # every input frame was shown or counted
    assert sched["video_shown"] + sum(sched["video_dropped"].values()) == int(SECONDS * 25)
    assert sched["av_offset_in_bt1359"] == 1.0
    assert report["lipsync"]["enabled"] and report["lipsync"]["frames_rendered"] > 0
    assert report["ear_voice_span"]["n"] >= 1 and report["ear_voice_span"]["p50"] > 0
    assert "jovem" in report["translation"].lower()
    kinds = {(c["kind"], c["final"]) for c in report["captions"]}
    assert {("source", True), ("translation", True)} <= kinds and ("source", False) in kinds  # partials too
    assert any(d["kind"] == "place" for d in report["decisions"])
    # the MP4 holds H.264 video and AAC audio of the same length, the audio is the Portuguese speech
    streams = _streams(out)
    assert set(streams) == {"video", "audio"}
    frames, video_s = streams["video"]
    assert frames == report["video"]["frames_written"] and abs(video_s - streams["audio"][1]) < 0.2
    from rt_f2f.audio import read_audio

    heard = " ".join(w.text for w in whisper_base.transcribe(read_audio(out, 16000), language="pt").words)
    assert "jovem" in heard.lower()
    # captions beside it, in both languages, inside the file's time
    vtt = out.with_suffix(".vtt").read_text()
    assert vtt.startswith("WEBVTT") and "jovem" in vtt.lower()
    assert "young man" in out.with_suffix(".en.vtt").read_text().lower()
    assert not list(tmp_path.glob(".rt-f2f-*")) and not list(tmp_path.glob(".out-*"))


def test_without_checkpoint_the_delayed_video_passes_through(talking, tmp_path: Path, capsys) -> None:
    from rt_f2f.video import read_frames

    out = tmp_path / "plain.mp4"
    rc = main(
        ["translate", str(talking["video"]), "--source", "en", "--target", "pt", "--outfile", str(out),
         "--report", str(tmp_path / "r.json"), "--realtime"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "no --checkpoint_path" in err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["lipsync"]["enabled"] is False and report["mode"] == "realtime"
    sched = report["scheduler"]
    assert sched["clauses_dropped"] == 0  # the default keeps every clause, live too
    if report["output_delay"]["max_s"] is not None and report["output_delay"]["max_s"] > 4.0:
        assert sched["clauses_over_bound"] >= 1  # late speech is kept and reported, never hidden
    # frames are the source frames, unchanged but for the codec: the first output frame is the first input frame
    first_in = next(read_frames(talking["video"])).image.astype(int)
    first_out = next(read_frames(out)).image.astype(int)
    assert np.abs(first_in - first_out).mean() < 4


def test_bad_inputs_are_clear_errors(talking, tmp_path: Path, capsys) -> None:
    from media_fixtures import write_face_photo

    from rt_f2f.video import write_video

    still = write_face_photo(tmp_path / "face.png")
    silent = tmp_path / "silent.mp4"
    write_video(silent, [np.zeros((64, 64, 3), np.uint8)] * 5, 25.0)
    for source, message in ((still, "still image"), (silent, "no audio"), (tmp_path / "nope.mp4", "no such file")):
        rc = main(["translate", str(source), "--source", "en", "--target", "pt", "--outfile", str(tmp_path / "o.mp4")])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and "hint:" in err
    assert not (tmp_path / "o.mp4").exists()
