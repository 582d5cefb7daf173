"""The speech engine: live speech in one language becomes translated speech in the speaker's voice.

``SpeechEngine`` wires the audio half of the product (VAD -> streaming ASR -> clauses -> MT -> streaming TTS ->
voice conversion) as one ``Pipeline`` and yields synthesised ``SpeechChunk`` frames and ``Caption`` frames
(partial and final, source and translation) as they happen. The same engine serves the file command
(``speechcmd``, through ``recording.translate_recording``), the A/V pipeline, the camera and the WebRTC server.
Models load once in ``load()`` (blocking: call it from a thread). ``file_chunks`` feeds it a recording.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np

from . import languages
from .asr.window import EncoderWindow
from .clauses import ClauseConfig
from .critical import CriticalPath
from .errors import LanguageError, RtF2fError
from .framequeue import end_of_stream, end_stream, is_end
from .frames import AudioChunk, Caption, ControlEvent, Frame, SpeechChunk, Transcript, Translation, join_words
from .recognition import RecognitionConfig
from .stage import LatencyLog, Pipeline, Stage
from .waterfall import WaterfallRecorder

if TYPE_CHECKING:  # the contracts only: the backends behind them load in load_models(), not at import
    from .asr.base import Recogniser
    from .mt.base import Translator
    from .tts.base import Synthesizer
    from .voice.convert import VCStage
    from .voice.embedding import Embedder

CHUNK_SECONDS = 0.05


@dataclass
class SpeechConfig:
    source: str
    target: str
    asr_model: str = "whisper-base"
    mt_model: str | None = None
    tts_backend: str | None = None  # None: chosen by target language
    voice_conversion: bool = True
    # how speech becomes clauses: the fields and defaults of recognition.RecognitionConfig
    vad_aggressiveness: int = RecognitionConfig.vad_aggressiveness
    asr_beam_size: int = RecognitionConfig.asr_beam_size
    asr_window: EncoderWindow = RecognitionConfig.asr_window
    asr_policy: str = RecognitionConfig.asr_policy
    asr_step_s: float = RecognitionConfig.asr_step_s
    asr_margin_s: float = RecognitionConfig.asr_margin_s
    pause_commit: bool = RecognitionConfig.pause_commit
    clauses: ClauseConfig = field(default_factory=ClauseConfig)
    tts_max_speed: float = 1.3  # the TTS speaks up to this much faster while the listener is behind (1: never)
    tts_first_phrase_words: int | None = 3  # slow voices cut a clause's first phrase after this many words
    # live, the ASR holds its next step (<= 1 s) while the TTS voices what a listener waits for (critical.CriticalPath):
    # ab_speech, 4 rounds on a quiet 2-core VM: EVS p50 5.40 vs 5.85 s, p95 6.45 vs 7.69 s, chrF unchanged
    tts_priority: bool = True
    queue_size: int = 32

    @property
    def recognition(self) -> RecognitionConfig:
        return RecognitionConfig(**{f.name: getattr(self, f.name) for f in fields(RecognitionConfig)})

    def __post_init__(self) -> None:
        source, target = (languages.validate(code) for code in (self.source, self.target))
        from .asr.policy import POLICIES

        if self.asr_policy not in POLICIES:
            raise RtF2fError(
                f"unknown ASR commit policy '{self.asr_policy}'", f"choose one of {', '.join(sorted(POLICIES))}"
            )
        if not 1.0 <= self.tts_max_speed <= 2.0:
            raise RtF2fError(f"TTS max speed {self.tts_max_speed} is out of range", "use 1.0 (never) to 1.5")
        if not 0.2 <= self.asr_step_s <= 5.0:
            raise RtF2fError(f"ASR step {self.asr_step_s} s is out of range", "use 0.5 to 2 seconds")
        if source == target:
            raise LanguageError(
                f"source and target are both '{source}'",
                "choose a different target (listeners of the same language get the original)",
            )


@dataclass
class SpeechModels:
    """Loaded models, shareable by several engines of the same language pair (the server does this)."""

    recogniser: Recogniser
    translator: Translator
    synthesizer: Synthesizer
    embedder: Embedder | None  # loaded up front so the first enrolment does not pay for it


def load_models(config: SpeechConfig) -> SpeechModels:
    from .asr.whisper import load_whisper
    from .models.plan import require_models
    from .mt import get_translator
    from .tts import get_synthesizer

    # one message naming every model to pull, before minutes of loading find them missing one at a time
    require_models(config.source, config.target, config.asr_model, config.mt_model, config.tts_backend)
    recogniser = load_whisper(config.asr_model)
    recogniser.check_language(config.source)
    translator = get_translator(config.source, config.target, model=config.mt_model)
    synthesizer = get_synthesizer(config.target, backend=config.tts_backend)
    embedder = None
    if config.voice_conversion:
        from .voice import get_embedder

        embedder = get_embedder()
    return SpeechModels(recogniser, translator, synthesizer, embedder)


class SpeechEngine:
    def __init__(self, config: SpeechConfig, models: SpeechModels | None = None) -> None:
        self.config = config
        self.models = models
        self.log = LatencyLog()
        self.vc: VCStage | None = None  # the voice-conversion stage, fed the speaker's audio for live enrolment
        self.critical: CriticalPath | None = None  # with tts_priority: what the TTS marks and the ASR defers to
        self.waterfall = WaterfallRecorder()
        self.origin = time.perf_counter()  # perf_counter of session time 0 (the caller sets it when input starts)

    def load(self) -> None:
        if self.models is None:
            self.models = load_models(self.config)

    def stages(self, live: bool = True) -> list[Stage]:
        """``live``: the audio arrives as it is spoken and a listener waits (the TTS-priority gate acts only then;
        a run faster than real time keeps its ASR steps where the audio puts them, so its output is repeatable)."""
        from .mt import MTStage
        from .recognition import recognition_stages
        from .tts import TTSStage
        from .tts.select import SpeakingPace

        self.load()
        m = self.models
        self.critical = CriticalPath() if self.config.tts_priority and live else None
        stages: list[Stage] = [
            *recognition_stages(m.recogniser, self.config.source, self.config.recognition, critical=self.critical),
            MTStage(m.translator),
            TTSStage(
                m.synthesizer,
                pace=SpeakingPace(max_speed=self.config.tts_max_speed) if self.config.tts_max_speed > 1 else None,
                first_phrase_words=self.config.tts_first_phrase_words,
                critical=self.critical,
            ),
        ]
        if self.config.voice_conversion:
            from .voice import VCStage

            self.vc = VCStage()
            stages.append(self.vc)
        return stages

    async def run(
        self, audio: AsyncIterable[AudioChunk | ControlEvent], live: bool = True
    ) -> AsyncIterator[SpeechChunk | Caption]:
        """Translated speech and captions, in the order they are produced (``live``: see ``stages``). ``audio`` may
        carry control events: END_OF_SPEECH closes the sentence heard so far (the VAD's open segment)."""
        out: asyncio.Queue[Frame] = asyncio.Queue(maxsize=256)

        def tap(stage: str, frame: Frame) -> None:
            self.waterfall.observe(stage, frame, time.perf_counter() - self.origin)
            for caption in captions_for(frame):
                if out.full() and not caption.final:
                    return  # a slow reader loses partial captions, never final ones or speech
                out.put_nowait(caption)

        async def enrol(source: AsyncIterable[AudioChunk | ControlEvent]) -> AsyncIterator[AudioChunk | ControlEvent]:
            async for chunk in source:
                if self.vc is not None and isinstance(chunk, AudioChunk):
                    self.vc.enrol(chunk)
                yield chunk

        pipeline = Pipeline(self.stages(live), maxsize=self.config.queue_size, log=self.log, tap=tap)

        async def drive() -> None:
            pts = 0.0
            try:
                async for frame in pipeline.run(enrol(audio)):
                    pts = frame.pts
                    await out.put(frame)
            finally:
                await end_stream(out, end_of_stream(pts))

        task = asyncio.create_task(drive(), name="speech-engine")
        try:
            while not is_end(item := await out.get()):
                yield item
            await task
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def captions_for(frame: Frame) -> list[Caption]:
    """Source captions from transcripts (partial and final), translation captions from translations."""
    if isinstance(frame, Transcript):
        words = frame.committed + frame.partial
        if not words:
            return []
        return [Caption(join_words(words), frame.language, words[0].start, words[-1].end, frame.final, "source")]
    if isinstance(frame, Translation):
        return [Caption(frame.text, frame.language, frame.source.pts, frame.source.end, True, "translation")]
    return []


async def file_chunks(
    samples: np.ndarray,
    sample_rate: int,
    realtime: bool,
    clock: Callable[[], float] = time.perf_counter,
    t0: float | None = None,
) -> AsyncIterator[AudioChunk]:
    """A recording as a stream of chunks; with ``realtime`` each chunk arrives when it would have been spoken
    (sample 0 at ``t0`` on ``clock``, default: now)."""
    step = int(CHUNK_SECONDS * sample_rate)
    t0 = clock() if t0 is None else t0
    for start in range(0, samples.size, step):
        pts = start / sample_rate
        if realtime:
            delay = t0 + pts + CHUNK_SECONDS - clock()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)
        yield AudioChunk(samples[start : start + step], sample_rate, pts, source="file")
