"""Robustness corpus for the commands: bad arguments and unwritable outputs end in one clear error, before any work.

Each case writes down what must happen: exit code 2, ``rt-f2f: error: ...`` with a ``hint:`` line on stderr, no
traceback, and no file left behind (the folder holds exactly what it held before). Outputs are checked before
models load or media is read, so every case here takes milliseconds (``rt_f2f.outputs``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from media_fixtures import write_face_photo, write_speech

from rt_f2f.cli import main
from rt_f2f.errors import ModelFormatError
from rt_f2f.outputs import OutputError, check_output, check_outputs


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def expect_one_clear_error(capsys: pytest.CaptureFixture, argv: list[str], folder: Path, words: str) -> str:
    before = snapshot(folder)
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0].startswith("rt-f2f: error: ") and words in lines[0], err
    assert len(lines) == 2 and lines[1].startswith("  hint: "), err
    assert "Traceback" not in err
    assert snapshot(folder) == before, "files were left behind"
    return err


@pytest.fixture
def media(tmp_path: Path) -> dict[str, Path]:
    """A face photo, a second of speech, a file where a folder is expected, a folder where a file is expected."""
    inputs = tmp_path / "in"
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    return {
        "face": write_face_photo(inputs / "face.png"),
        "speech": write_speech(inputs / "speech.wav", 1.0),
        "folder": tmp_path / "a_folder",
        "file": tmp_path / "a_file",
    }


def cases(m: dict[str, Path]) -> dict[str, tuple[list[str], str]]:
    """argv -> words the error line must contain."""
    speech = ["speech", str(m["speech"]), "--source", "en", "--target", "pt"]
    translate = ["translate", str(m["speech"]), "--source", "en", "--target", "pt"]
    lipsync = ["lipsync", "--face", str(m["face"]), "--audio", str(m["speech"])]
    out_mp4 = str(m["folder"] / "out.mp4")
    return {
        "speech --out is a directory": (speech + ["--out", str(m["folder"])], "is a directory"),
        "speech --out under a file": (speech + ["--out", str(m["file"] / "x.wav")], "is a file, not a folder"),
        "speech --report under a file (no WAV written)": (
            speech + ["--out", str(m["folder"] / "ok.wav"), "--report", str(m["file"] / "r.json")],
            "is a file, not a folder",
        ),
        "speech --out and --report the same": (
            speech + ["--out", str(m["folder"] / "x"), "--report", str(m["folder"] / "x")],
            "name the same file",
        ),
        "translate --lipsync-batch 0": (translate + ["--outfile", out_mp4, "--lipsync-batch", "0"], "--lipsync-batch"),
        "translate --outfile is a directory": (translate + ["--outfile", str(m["folder"])], "is a directory"),
        "translate --report under a file": (
            translate + ["--outfile", out_mp4, "--report", str(m["file"] / "deep" / "r.json")],
            "is a file, not a folder",
        ),
        "lipsync --fps 0": (lipsync + ["--fps", "0", "--outfile", out_mp4], "--fps"),
        "lipsync --fps nan": (lipsync + ["--fps", "nan", "--outfile", out_mp4], "--fps"),
        "lipsync --resize_factor 0": (lipsync + ["--resize_factor", "0", "--outfile", out_mp4], "--resize_factor"),
        "lipsync --pads -1": (lipsync + ["--pads", "0", "-1", "0", "0", "--outfile", out_mp4], "--pads"),
        "lipsync --wav2lip_batch_size 0": (lipsync + ["--wav2lip_batch_size", "0", "--outfile", out_mp4], "batch"),
        "lipsync --outfile is a directory": (lipsync + ["--outfile", str(m["folder"])], "is a directory"),
        "lipsync --outfile under a file": (lipsync + ["--outfile", str(m["file"] / "o.mp4")], "is a file"),
        "bench --out is a file": (["bench", "--out", str(m["file"]), "--suite", "none"], "is a file, not a folder"),
        "serve --public-url with a query": (["serve", "--public-url", "https://x.org/?a=b"], "--public-url"),
        "serve --public-url not http": (["serve", "--public-url", "javascript:alert(1)"], "--public-url"),
        "serve --max-video-size garbage": (["serve", "--max-video-size", "big"], "--max-video-size"),
        "serve --client-rate 0": (["serve", "--client-rate", "0"], "--client-rate"),
        "serve --max-rooms-per-client 0": (["serve", "--max-rooms-per-client", "0"], "--max-rooms-per-client"),
    }


CASE_NAMES = list(cases({k: Path("x") for k in ("face", "speech", "folder", "file")}))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_arguments_and_outputs_fail_first_in_one_line(capsys, tmp_path, media, case):
    argv, words = cases(media)[case]
    expect_one_clear_error(capsys, argv, tmp_path, words)


def test_nan_audio_is_refused_by_name(capsys, tmp_path, media):
    nan_wav = tmp_path / "in" / "nan.wav"
    samples = np.zeros(16000, np.float32)
    samples[100:200] = np.nan
    sf.write(nan_wav, samples, 16000, subtype="FLOAT")
    argv = ["lipsync", "--face", str(media["face"]), "--audio", str(nan_wav), "--outfile", str(tmp_path / "o.mp4")]
    expect_one_clear_error(capsys, argv, tmp_path, "NaN")


def test_empty_checkpoint_is_a_model_format_error(capsys, tmp_path, media):
    from rt_f2f.lipsync.checkpoint import read_state_dict

    empty = tmp_path / "in" / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(ModelFormatError, match="empty"):
        read_state_dict(empty)
    truncated = tmp_path / "in" / "truncated.pth"
    truncated.write_bytes(b"PK\x03\x04")  # the start of a zip, nothing more: torch raises with an odd message
    with pytest.raises(ModelFormatError):
        read_state_dict(truncated)
    argv = ["lipsync", "--checkpoint_path", str(empty), "--face", str(media["face"]), "--audio", str(media["speech"])]
    expect_one_clear_error(capsys, argv + ["--outfile", str(tmp_path / "o.mp4")], tmp_path, "empty")


def test_output_checks_create_nothing(tmp_path):
    target = tmp_path / "new" / "deeper" / "out.wav"
    assert check_output("--out", target) == target
    assert not (tmp_path / "new").exists()  # folders are made by the command when it writes, not by the check
    check_output("--out", tmp_path / "results", folder=True)
    assert list(tmp_path.iterdir()) == []
    check_outputs(("--out", tmp_path / "a.wav"), ("--report", None))
    with pytest.raises(OutputError, match="empty"):
        check_output("--out", "")


def unwritable_folder(tmp_path: Path) -> Path | None:
    """A folder this process cannot create files in: a read-only one, or (root writes anywhere) sysfs or procfs."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys"), Path("/proc")):
        try:
            fd, probe = tempfile.mkstemp(dir=candidate)
        except OSError:
            return candidate
        os.close(fd)
        os.unlink(probe)
    return None


def test_read_only_folder_is_refused_before_work(capsys, tmp_path, media):
    folder = unwritable_folder(tmp_path)
    if folder is None:
        pytest.skip("no folder here refuses writes")
    try:
        argv = ["speech", str(media["speech"]), "--source", "en", "--target", "pt", "--out", str(folder / "x.wav")]
        err = expect_one_clear_error(capsys, argv, tmp_path, "cannot write in")
        assert "--out" in err
        argv = ["bench", "--out", str(folder / "results"), "--suite", "none"]
        expect_one_clear_error(capsys, argv, tmp_path, "cannot write in")
    finally:
        (tmp_path / "read-only").chmod(0o755)
