"""What the real-browser call tests (Chromium, Firefox) share: a live server, the Python participant, audio checks.

Import ``loopback_ice`` into a test module to make it autouse there: aioice skips 127.0.0.1 when gathering host
candidates, and the browsers here have no other address to offer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from rt_f2f.server.app import ServerConfig, create_app, serve_locally
from rt_f2f.server.client import ArrayAudioTrack, PatternVideoTrack, RoomClient

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "en_sample.wav"  # LibriVox English speech, 11.6 s
REFERENCE_ALL = (EXAMPLE.with_suffix(".txt")).read_text(encoding="utf-8")  # all three


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice skips 127.0.0.1 when gathering; the browsers offer it when told to (a flag, or a pref)."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"])


@contextlib.asynccontextmanager
async def served(feed_factory=None, config: ServerConfig | None = None) -> AsyncIterator[tuple[web.Application, str]]:
    """The call server on a free loopback port: (app, base URL); it stops when the block ends."""
    app = create_app(config or ServerConfig(), feed_factory)
    runner, base = await serve_locally(app)
    try:
        yield app, base
    finally:
        await runner.cleanup()


def python_participant(
    base: str, room: dict, language: str, video: tuple[int, int, int], audio: ArrayAudioTrack | None = None
) -> RoomClient:
    """The participant "Bot", speaking and hearing ``language``: sends ``audio`` (silence by default) and a test
    pattern (w, h, fps)."""
    return RoomClient(
        base,
        room["id"],
        room["token"],
        name="Bot",
        speak=language,
        hear=language,
        slots=3,
        audio=audio or ArrayAudioTrack(np.zeros(16000, np.float32), 16000, loop=True),
        video=PatternVideoTrack(*video),
    )


async def wait_or_explain(bot: RoomClient, predicate, timeout: float, what: str, poll: float = 0.2) -> None:
    """Wait for ``predicate``; on timeout fail with what the server last said (stats, statuses, captions)."""
    try:
        await bot.wait_for(predicate, timeout, poll=poll)
    except TimeoutError:
        stats = [m for m in bot.messages if m["type"] == "stats"][-1:]
        statuses = [m for m in bot.messages if m["type"] == "status"]
        raise AssertionError(f"{what} not within {timeout} s; stats {stats}; status {statuses}; "
                             f"captions {bot.captions[-4:]}") from None  # fmt: skip


@pytest.fixture(scope="module")
def whisper():
    """whisper-base for checking what was heard, loaded on first use (not while a speech engine is working)."""
    from functools import cache

    from faster_whisper import WhisperModel

    from rt_f2f.errors import ModelMissingError
    from rt_f2f.models import model_path

    try:
        path = model_path("whisper-base")
    except ModelMissingError as exc:
        pytest.skip(f"whisper-base is not available: {exc}")
    return cache(lambda: WhisperModel(str(path), device="cpu", compute_type="int8"))


def transcribe(model, samples_48k: np.ndarray, language: str | None = None) -> tuple[str, str, float]:
    """(text, detected language, its probability) of 48 kHz audio; ``model`` is the ``whisper`` fixture."""
    from rt_f2f.audio import resample

    audio = resample(samples_48k, 48000, 16000)
    segments, info = model().transcribe(audio, language=language, beam_size=1, vad_filter=True)
    return " ".join(s.text.strip() for s in segments).strip(), info.language, info.language_probability


def likeliest_languages(model, samples_48k: np.ndarray, n: int = 5) -> list[tuple[str, float]]:
    """Whisper's ``n`` likeliest languages for 48 kHz audio, with their probabilities.

    Whisper base's single guess wavers on the translated voice as it arrives (Kokoro's Portuguese, converted to the
    speaker's voice, through Opus): in 8 runs of the browser test it said Portuguese 6 times, then English at 0.43,
    Japanese at 0.66 and Latin at 0.23 for speech it transcribes, told it is Portuguese, as "Ele não era ...". So
    tests check the words with the language forced, and ask the guess only to rule out the speaker's own English
    (which Whisper takes for English at > 0.9)."""
    from rt_f2f.audio import resample

    _, _, ranked = model().detect_language(resample(samples_48k, 48000, 16000), vad_filter=True)
    return [(code, round(float(p), 3)) for code, p in ranked[:n]]


def words(text: str) -> set[str]:
    return {w.strip(".,!?;:'\"").lower() for w in text.replace("-", " ").split()}


def sentences_heard(text: str, min_words: int = 5) -> list[str]:
    """The sample's sentences of which ``text`` holds at least ``min_words`` words. Under a busy CPU a capture or
    playout glitch may take a sentence's first words; counting whole sentences keeps the check that speech was
    carried without hanging it on one sentence's start."""
    return [s for s in REFERENCE_ALL.splitlines() if len(words(s) & words(text)) >= min_words]
