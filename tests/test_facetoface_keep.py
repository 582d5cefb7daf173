"""A recorded file never loses speech: a translation longer than its video extends the output (last frame held)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from rt_f2f.av.config import OUTPUT_RATE, FaceToFaceConfig
from rt_f2f.av.facetoface import FaceToFace
from rt_f2f.av.schedule import DecisionKind
from rt_f2f.frames import AudioChunk, Caption, Clause, SpeechChunk, Translation, VideoFrame, Word

FPS = 25.0
SPEECH_RATE = 24000


class LongTranslationEngine:
    """Each second of input becomes a clause whose translation lasts ``ratio`` seconds (a steady tone)."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio

    def load(self) -> None:
        pass

    async def run(self, audio, live: bool = True) -> AsyncIterator[SpeechChunk | Caption]:
        held, k = 0.0, 0
        async for chunk in audio:
            held += chunk.duration
            if held >= 1.0 - 1e-9:
                clause = Clause("hello", (Word(" hello", chunk.end - 0.9, chunk.end - 0.1),), "en", k)
                tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(int(self.ratio * SPEECH_RATE)) / SPEECH_RATE)
                speech = AudioChunk(tone.astype(np.float32), SPEECH_RATE, clause.pts)
                yield SpeechChunk(speech, Translation(clause, "olá", "pt"), True, True)
                held, k = 0.0, k + 1


def frames(seconds: float) -> list[VideoFrame]:
    rng = np.random.default_rng(0)
    return [
        VideoFrame(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), i / FPS, i) for i in range(int(seconds * FPS))
    ]


async def test_a_long_translation_of_a_short_video_keeps_all_its_speech() -> None:
    video = frames(3.0)
    written: list[np.ndarray] = []
    pipeline = FaceToFace(LongTranslationEngine(ratio=3.0), FaceToFaceConfig(fps=FPS, realtime=False))
    result = await pipeline.run(np.zeros(3 * 16000, np.float32), iter(video), written.append)

    metrics = result.scheduler.metrics()
    assert metrics.count(DecisionKind.DROP) == 0
    assert [c.clause_id for c in metrics.clauses] == [0, 1, 2]
    # every translated second is heard: 9 s of tone (sped up at most to 1.25x) in the output audio
    audio = result.audio_samples
    block = OUTPUT_RATE // 50
    rms = np.sqrt(np.mean(audio[: audio.size // block * block].reshape(-1, block) ** 2, axis=1))
    assert (rms > 0.1).sum() / 50 >= 9.0 / 1.25 - 0.1
    assert metrics.count(DecisionKind.OVER_BOUND) >= 1  # it could not fit in D_max: kept and reported
    # the video is extended to cover the speech: the last source frame is held
    assert len(written) / FPS >= audio.size / OUTPUT_RATE - 2 / FPS
    assert len(written) > len(video)
    assert np.array_equal(written[-1], video[-1].image)
