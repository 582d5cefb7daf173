"""``rt-f2f lipsync``: the file command end to end on a real face and real speech, with a random-weight checkpoint.

Random weights say nothing about lip-sync quality; these tests check the plumbing: frame count, muxed audio, that
only the mouth region changes, and that bad input fails with a clear message and no half-written output.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from lipsync_fixtures import shared_checkpoint, write_random_checkpoint
from media_fixtures import face_photo, write_face_photo, write_speech, write_talking_clip

from rt_f2f.errors import MediaError, ModelFormatError, RtF2fError
from rt_f2f.lipsync import filecmd, filerun
from rt_f2f.lipsync.detectors import MediaPipeDetector
from rt_f2f.lipsync.mel import frame_count, mel_steps
from rt_f2f.video import read_frames

REPO = Path(__file__).resolve().parents[1]


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse as ``rt-f2f`` would, with only this subcommand registered (other subcommands' imports stay out)."""
    parser = argparse.ArgumentParser(prog="rt-f2f")
    filecmd.add_subcommand(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("lipsync-media")
    cv2.imwrite(str(d / "wall.png"), np.full((128, 128, 3), 190, np.uint8))  # a photo without a face
    return {
        "photo": write_face_photo(d / "face.png", 256),
        "odd": write_face_photo(d / "odd.jpg", (255, 203)),
        "speech": write_speech(d / "speech.wav", 1.0),
        "clip": write_talking_clip(d / "clip.mp4", 0.8, faceless=frozenset({6, 7})),
        "wall": d / "wall.png",
    }


def probe(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {"width": v.codec_context.width, "height": v.codec_context.height, "fps": float(v.average_rate)}
        info["audio"] = [(a.codec_context.name, float(a.duration * a.time_base)) for a in c.streams.audio]
    info["frames"] = [f.image for f in read_frames(path)]
    return info


def face_box(image: np.ndarray):
    det = MediaPipeDetector()
    try:
        return det.detect([image])[0][0].padded((0, 10, 0, 0), image.shape[1], image.shape[0])
    finally:
        det.close()


def test_photo_and_speech_make_a_video_of_the_audio_length_with_only_the_mouth_changed(media, tmp_path):
    out = tmp_path / "results" / "result_voice.mp4"
    argv = ["lipsync", "--checkpoint_path", str(shared_checkpoint()), "--face", str(media["photo"])]
    argv += ["--audio", str(media["speech"]), "--outfile", str(out), "--wav2lip_batch_size", "8"]
    assert main(argv) == 0
    info = probe(out)
    assert info["fps"] == 25.0
    assert len(info["frames"]) == 22  # 1.0 s of audio at 25 fps: the original's 22 mel windows, the last clamped
    assert [name for name, _ in info["audio"]] == ["aac"]
    assert abs(info["audio"][0][1] - 1.0) < 0.1
    photo = face_photo(256)
    box = face_box(photo)
    inside = np.zeros(photo.shape[:2], bool)
    inside[box.y1 : box.y2, box.x1 : box.x2] = True
    mouth = np.zeros_like(inside)
    mouth[int(box.y1 + 0.6 * box.height) : int(box.y1 + 0.85 * box.height), int(box.x1 + 0.3 * box.width) :][
        :, : int(0.4 * box.width)
    ] = True
    for frame in info["frames"][::6]:
        diff = np.abs(frame.astype(int) - photo.astype(int)).mean(axis=2)
        assert diff[~inside].mean() < 2.5  # outside the padded face box: the photo, up to H.264 noise
        assert np.percentile(diff[~inside], 99.5) < 20
        assert diff[mouth].mean() > 3 * diff[~inside].mean() + 5  # the mouth was redrawn


def test_odd_sized_photo_gives_even_h264_and_keeps_every_pixel(media, tmp_path):
    out = tmp_path / "odd.mp4"
    result = filerun.lipsync_file(shared_checkpoint(), media["odd"], media["speech"], out, batch_size=8, fps=10)
    assert result.frames == 10
    info = probe(out)
    assert (info["width"], info["height"]) == (256, 204)  # padded by one replicated pixel, not cropped
    photo = cv2.cvtColor(cv2.imread(str(media["odd"])), cv2.COLOR_BGR2RGB)
    top_left = np.abs(info["frames"][0][:40, :60].astype(int) - photo[:40, :60].astype(int)).mean()
    assert top_left < 3


def test_video_face_loops_when_shorter_and_faceless_frames_pass_through(media, tmp_path):
    out = tmp_path / "from_video.mp4"
    result = filerun.lipsync_file(shared_checkpoint(), media["clip"], media["speech"], out, batch_size=8)
    assert result.frames == 22  # the 0.8 s clip plays forward then back to cover 1.0 s of audio (22 mel windows)
    assert result.frames_without_face == 2 and result.stats["faceless_indices"] == [6, 7]
    assert result.stats["detector_runs"] < 25  # tracked between detections
    frames = probe(out)["frames"]
    assert len(frames) == 22
    # a faceless frame (a plain wall) comes out as it went in
    assert np.abs(frames[6].astype(int) - 200).max() < 4


def test_audio_track_of_a_video_as_the_audio_source(media, tmp_path):
    out = tmp_path / "mp4_audio.mp4"
    result = filerun.lipsync_file(shared_checkpoint(), media["photo"], media["clip"], out, batch_size=8)
    assert abs(result.audio_seconds - 0.8) < 0.1  # AAC priming may add a frame's worth
    assert result.frames == frame_count(mel_steps(round(result.audio_seconds * 16000)), 25)
    assert len(probe(out)["frames"]) == result.frames


def test_parser_keeps_the_original_flags_and_defaults():
    args = parse(["lipsync", "--checkpoint_path", "c.pth", "--face", "f.mp4", "--audio", "a.wav"])
    assert args.func is filecmd.run
    assert args.outfile == "results/result_voice.mp4" and args.pads == [0, 10, 0, 0] and args.fps == 25.0
    assert args.wav2lip_batch_size == 128 and args.face_det_batch_size == 16 and args.resize_factor == 1
    assert args.static is False and args.nosmooth is False and args.backend is None
    more = ["--static", "True", "--pads", "0", "20", "5", "5", "--nosmooth", "--resize_factor", "2"]
    args = parse(["lipsync", "--face", "f.jpg", "--audio", "a.wav", *more])
    assert args.static is True and args.pads == [0, 20, 5, 5] and args.nosmooth and args.resize_factor == 2
    assert parse(["lipsync", "--face", "f", "--audio", "a", "--static"]).static is True
    args = parse(["lipsync", "--face", "f.mp4", "--audio", "a.wav"])
    assert args.crop == [0, -1, 0, -1] and args.box == [-1, -1, -1, -1] and not args.rotate and not args.exact
    more = ["--crop", "0", "400", "10", "-1", "--box", "5", "100", "6", "90", "--rotate", "--exact"]
    args = parse(["lipsync", "--face", "f.mp4", "--audio", "a.wav", *more])
    assert args.crop == [0, 400, 10, -1] and args.box == [5, 100, 6, 90] and args.rotate and args.exact


@pytest.mark.parametrize(
    ("flag", "values", "message"),
    [("--box", ["50", "40", "0", "10"], "--box"), ("--crop", ["0", "-1", "30", "20"], "--crop")],
)
def test_boxes_and_crops_that_are_not_regions_are_refused(media, flag, values, message):
    args = parse(["lipsync", "--face", str(media["photo"]), "--audio", str(media["speech"]), flag, *values])
    with pytest.raises(RtF2fError, match=message):
        filecmd.run(args)


def test_a_checkpoint_that_is_not_wav2lip_fails_clearly_from_the_command_line(media, tmp_path):
    syncnet = write_random_checkpoint(tmp_path / "lipsync_expert.pth", kind="syncnet")
    out = tmp_path / "never.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "rt_f2f", "lipsync", "--checkpoint_path", str(syncnet)]
        + ["--face", str(media["photo"]), "--audio", str(media["speech"]), "--outfile", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "SyncNet" in proc.stderr and "wav2lip.pth" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_bad_media_fails_with_clear_errors_and_no_output(media, tmp_path):
    ckpt = shared_checkpoint()
    out = tmp_path / "out.mp4"
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    with pytest.raises(MediaError, match="not a readable"):
        filerun.lipsync_file(ckpt, garbage, media["speech"], out)
    tiny = write_speech(tmp_path / "tiny.wav", 0.01)
    with pytest.raises(MediaError, match="shorter than one video frame"):
        filerun.lipsync_file(ckpt, media["photo"], tiny, out)
    with pytest.raises(MediaError, match="no face"):
        filerun.lipsync_file(ckpt, media["wall"], media["speech"], out)
    with pytest.raises(ModelFormatError):
        bad = tmp_path / "bad.pth"
        bad.write_bytes(b"\x00" * 1000)
        filerun.lipsync_file(bad, media["photo"], media["speech"], out)
    assert not out.exists()


def test_a_video_without_any_face_leaves_no_file(media, tmp_path):
    clip = write_talking_clip(tmp_path / "walls.mp4", 0.4, faceless=frozenset(range(10)))
    out = tmp_path / "out.mp4"
    with pytest.raises(MediaError, match="no face found in any"):
        filerun.lipsync_file(shared_checkpoint(), clip, media["speech"], out, batch_size=8)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walls.mp4"]  # no temporary file left behind


def test_cli_checks_arguments_before_work(media, tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        main(["lipsync", "--face", str(tmp_path / "missing.png"), "--audio", str(media["speech"])])
    with pytest.raises(RtF2fError, match="--fps"):
        main(["lipsync", "--face", str(media["photo"]), "--audio", str(media["speech"]), "--fps", "0"])
