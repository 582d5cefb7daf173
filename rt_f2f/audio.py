"""Audio in and out of files, and resampling: PyAV does the decoding, soxr-quality resampling via scipy.

All audio inside rt-f2f is mono float32 in [-1, 1]; files of any container or codec PyAV reads (wav, mp3, mp4,
webm...) come in through ``read_audio``. Writers go through a temporary file so a failed run never leaves half
a file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from math import gcd
from pathlib import Path

import numpy as np

from .errors import MediaError
from .rates import ENGINE_RATE

MAX_AUDIO_SECONDS = 4 * 3600  # untrusted input is bounded: four hours is more than any session


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (anti-aliased), float32 out."""
    samples = np.asarray(samples, dtype=np.float32)
    if rate_in == rate_out or samples.size == 0:
        return samples
    from scipy.signal import resample_poly  # here, not at the top: every command's --help imports this module

    g = gcd(int(rate_in), int(rate_out))
    return resample_poly(samples, rate_out // g, rate_in // g).astype(np.float32)


class StreamingResampler:
    """Mono float32 in, mono float32 out at another rate, block by block, without a seam at block edges.

    libswresample (through PyAV) keeps its filter state between calls, so streamed speech does not click where one
    block ends and the next begins; ``flush`` returns the samples it still holds once the stream ends. (The VAD
    uses ``rt_f2f.vad.StreamResampler`` instead: it must match whole-signal ``resample_poly`` exactly.)
    """

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        self._resampler = None
        if self.rate_in != self.rate_out:
            import av

            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate_out)

    def process(self, samples: np.ndarray) -> np.ndarray:
        samples = np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1)
        if self._resampler is None or samples.size == 0:
            return samples.reshape(-1).copy()
        import av

        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = self.rate_in
        return mono_samples(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return mono_samples(self._resampler.resample(None))


def mono_samples(frames: list) -> np.ndarray:
    """PyAV mono audio frames -> one float32 array."""
    if not frames:
        return np.zeros(0, np.float32)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)


def read_audio(
    path: str | os.PathLike, sample_rate: int = ENGINE_RATE, max_seconds: float = MAX_AUDIO_SECONDS
) -> np.ndarray:
    """Decode the first audio stream of any media file to mono float32 at ``sample_rate``."""
    import av

    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: no such file", "check the path")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: the file is empty", "record or export the audio again")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"{path}: not a readable media file ({exc})", "convert it to WAV, MP3 or MP4") from exc
    chunks: list[np.ndarray] = []
    total = 0
    limit = int(max_seconds * sample_rate)
    with container:
        if not container.streams.audio:
            raise MediaError(f"{path}: has no audio stream", "give a file with speech in it")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    arr = out.to_ndarray().reshape(-1)
                    chunks.append(arr)
                    total += arr.size
                if total > limit:
                    raise MediaError(f"{path}: longer than the {max_seconds / 3600:.0f} h limit", "split the recording")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: corrupt audio ({exc})", "re-export the file") from exc
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise MediaError(f"{path}: the audio stream holds no samples", "give a file with speech in it")
    if not np.isfinite(samples).all():  # float WAVs can hold them; every later stage would choke differently
        raise MediaError(f"{path}: the audio holds NaN or infinite samples", "re-export it, e.g. as 16-bit PCM WAV")
    return samples


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        mask = os.umask(0)  # mkstemp made the file private; give it the mode a plain open() would
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike, data: object) -> Path:
    """A report, UTF-8 and indented, written atomically."""
    import json

    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return Path(path)


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM WAV, written atomically."""
    import soundfile as sf

    pcm = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    with atomic_output(path) as tmp:
        sf.write(str(tmp), pcm, sample_rate, subtype="PCM_16", format="WAV")
    return Path(path)


def to_int16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def time_base(sample_rate: int) -> Fraction:
    return Fraction(1, sample_rate)
