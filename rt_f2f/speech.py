"""The speech engine: live speech in one language becomes translated speech in the speaker's voice.

``SpeechEngine`` wires the audio half of the product (VAD -> streaming ASR -> clauses -> MT -> streaming TTS ->
voice conversion) as one ``Pipeline`` and yields synthesised ``SpeechChunk`` frames and ``Caption`` frames
(partial and final, source and translation) as they happen. The same engine serves the file command below, the
A/V pipeline and the WebRTC server. Models load once in ``load()`` (blocking: call it from a thread).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import languages
from .asr.window import STREAMING_WINDOW, EncoderWindow
from .audio import atomic_output, read_audio, resample, write_json, write_wav
from .clauses import ClauseConfig
from .errors import LanguageError, MediaError, RtF2fError
from .frames import AudioChunk, Caption, Clause, Frame, SpeechChunk, Transcript, Translation, join_words
from .rates import ENGINE_RATE
from .stage import LatencyLog, Pipeline, Stage
from .waterfall import ClauseWaterfall, WaterfallRecorder, stage_shares

if TYPE_CHECKING:  # the contracts only: the backends behind them load in load_models(), not at import
    from .asr.base import Recogniser
    from .mt.base import Translator
    from .tts.base import Synthesizer
    from .voice.convert import VCStage
    from .voice.embedding import Embedder

INPUT_RATE = ENGINE_RATE  # the old name, kept only for facetoface.py until it imports rates.ENGINE_RATE
CHUNK_SECONDS = 0.05


@dataclass
class SpeechConfig:
    source: str
    target: str
    asr_model: str = "whisper-base"
    mt_model: str | None = None
    tts_backend: str | None = None  # None: chosen by target language
    voice_conversion: bool = True
    vad_aggressiveness: int = 2
    asr_beam_size: int = 1
    asr_window: EncoderWindow = STREAMING_WINDOW  # Whisper's input per step; FULL_WINDOW pads to 30 s as before
    asr_policy: str = "alignatt"  # when heard words are final: "alignatt" (one pass) or "local-agreement" (two)
    asr_step_s: float = 1.0  # new audio between two ASR steps
    clauses: ClauseConfig = field(default_factory=ClauseConfig)
    tts_max_speed: float = 1.3  # the TTS speaks up to this much faster while the listener is behind (1: never)
    tts_first_phrase_words: int | None = 3  # slow voices cut a clause's first phrase after this many words
    queue_size: int = 32

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
        self.waterfall = WaterfallRecorder()
        self.origin = time.perf_counter()  # perf_counter of session time 0 (the caller sets it when input starts)

    def load(self) -> None:
        if self.models is None:
            self.models = load_models(self.config)

    def stages(self) -> list[Stage]:
        from .asr.policy import POLICIES
        from .asr.stage import ASRStage
        from .clauses import ClauseStage
        from .mt import MTStage
        from .tts import TTSStage
        from .tts.select import SpeakingPace
        from .vad import VADConfig, VADStage

        self.load()
        m = self.models
        stages: list[Stage] = [
            VADStage(VADConfig(aggressiveness=self.config.vad_aggressiveness)),
            ASRStage(
                m.recogniser,
                language=self.config.source,
                beam_size=self.config.asr_beam_size,
                window=self.config.asr_window,
                policy=lambda transcribe: POLICIES[self.config.asr_policy](
                    transcribe, min_chunk_s=self.config.asr_step_s
                ),
            ),
            ClauseStage(self.config.clauses),
            MTStage(m.translator),
            TTSStage(
                m.synthesizer,
                pace=SpeakingPace(max_speed=self.config.tts_max_speed) if self.config.tts_max_speed > 1 else None,
                first_phrase_words=self.config.tts_first_phrase_words,
            ),
        ]
        if self.config.voice_conversion:
            from .voice import VCStage

            self.vc = VCStage()
            stages.append(self.vc)
        return stages

    async def run(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[SpeechChunk | Caption]:
        """Translated speech and captions, in the order they are produced."""
        out: asyncio.Queue = asyncio.Queue(maxsize=256)
        done = object()

        def tap(stage: str, frame: Frame) -> None:
            self.waterfall.observe(stage, frame, time.perf_counter() - self.origin)
            for caption in captions_for(frame):
                if out.full() and not caption.final:
                    return  # a slow reader loses partial captions, never final ones or speech
                out.put_nowait(caption)

        async def enrol(source: AsyncIterable[AudioChunk]) -> AsyncIterator[AudioChunk]:
            async for chunk in source:
                if self.vc is not None:
                    self.vc.enrol(chunk)
                yield chunk

        pipeline = Pipeline(self.stages(), maxsize=self.config.queue_size, log=self.log, tap=tap)

        async def drive() -> None:
            try:
                async for chunk in pipeline.run(enrol(audio)):
                    await out.put(chunk)
            finally:
                await out.put(done)

        task = asyncio.create_task(drive(), name="speech-engine")
        try:
            while (item := await out.get()) is not done:
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


# -- the file command ------------------------------------------------------------------------------------------
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


@dataclass
class ClauseRecord:
    clause_id: int
    source_text: str
    source_start: float
    source_end: float
    first_word_end: float
    translation: str = ""
    audio_ready: float | None = None  # session time the first translated audio existed
    output_start: float | None = None
    output_end: float | None = None

    @property
    def ear_voice_span(self) -> float | None:
        """Source word end -> translated audio start (first word of the clause, as heard live)."""
        return None if self.output_start is None else self.output_start - self.first_word_end


@dataclass
class SpeechRun:
    """What one run of the engine over a recording produced."""

    audio: np.ndarray
    sample_rate: int
    clauses: list[ClauseRecord]
    log: LatencyLog
    duration: float
    wall: float
    realtime: bool
    source_captions: list[Caption] = field(default_factory=list)
    voice: dict[str, Any] = field(default_factory=dict)
    waterfall: list[ClauseWaterfall] = field(default_factory=list)


def place(records: list[ClauseRecord], realtime: bool) -> None:
    """Put each clause's speech on the output timeline.

    Live (``realtime``): a listener hears it when it exists, after the previous clause. Offline: as early as its
    source allows (its first source word), after the previous clause, as a dub would.
    """
    cursor = 0.0
    for rec in records:
        if rec.audio_ready is None:
            continue
        earliest = rec.audio_ready if realtime else rec.source_start
        rec.output_start = max(earliest, cursor)
        rec.output_end = rec.output_start + (rec.output_end or 0.0)  # output_end held the duration until now
        cursor = rec.output_end


async def translate_recording(
    engine: SpeechEngine, samples: np.ndarray, realtime: bool, on_progress: Callable[[str], None] | None = None
) -> SpeechRun:
    """Stream a 16 kHz recording through the engine and assemble the translated speech timeline."""
    await asyncio.to_thread(engine.load)
    out_rate = engine.models.synthesizer.sample_rate
    records: dict[int, ClauseRecord] = {}
    audio: dict[int, list[np.ndarray]] = {}
    source_captions: list[Caption] = []
    t0 = engine.origin = time.perf_counter()
    async for item in engine.run(file_chunks(samples, ENGINE_RATE, realtime, t0=t0)):
        now = time.perf_counter() - t0
        if isinstance(item, Caption):
            if item.kind == "source" and item.final:
                source_captions.append(item)
            continue
        clause: Clause = item.translation.source
        rec = records.get(clause.clause_id)
        if rec is None:
            rec = records[clause.clause_id] = ClauseRecord(
                clause.clause_id,
                clause.text,
                clause.pts,
                clause.end,
                clause.words[0].end if clause.words else clause.pts,
            )
            rec.translation = item.translation.text
            rec.audio_ready = now
            if on_progress:
                on_progress(f"[{clause.pts:6.2f}s] {clause.text!r} -> {item.translation.text!r}")
        chunk = resample(item.audio.samples, item.audio.sample_rate, out_rate)
        audio.setdefault(clause.clause_id, []).append(chunk)
    wall = time.perf_counter() - t0
    ordered = [records[k] for k in sorted(records)]
    for rec in ordered:
        rec.output_end = sum(c.size for c in audio[rec.clause_id]) / out_rate  # duration, until place() runs
    place(ordered, realtime)
    for rec in ordered:
        engine.waterfall.placed(rec.clause_id, rec.output_start)
    total = max((r.output_end for r in ordered), default=0.0)
    timeline = np.zeros(int(np.ceil(total * out_rate)) + 1, np.float32)
    for rec in ordered:
        clip = np.concatenate(audio[rec.clause_id])
        start = int(round(rec.output_start * out_rate))
        timeline[start : start + clip.size] += clip[: timeline.size - start]
    voice = voice_summary(engine)
    return SpeechRun(
        np.clip(timeline, -1, 1), out_rate, ordered, engine.log, samples.size / ENGINE_RATE, wall, realtime,
        source_captions, voice, engine.waterfall.rows(),
    )  # fmt: skip


def voice_summary(engine: SpeechEngine) -> dict[str, Any]:
    """When conversion started and what the enrolled profile holds, for the report."""
    vc = engine.vc
    if vc is None:
        return {"enabled": False}
    stats = vc.profile.stats
    return {
        "enabled": True,
        "profile_ready": vc.profile.ready,
        "events": [asdict(e) for e in vc.events],
        "speaker_f0_hz": stats.f0_hz if stats else None,
        "speaker_speech_seconds": stats.speech_seconds if stats else None,
        "chunks_converted": sum(e.converted for e in vc.events),
        "chunks_passed_through": sum(not e.converted for e in vc.events),
    }


def build_report(run: SpeechRun, config: SpeechConfig, input_path: str) -> dict[str, Any]:
    evs = [r.ear_voice_span for r in run.clauses if r.ear_voice_span is not None]
    summary = run.log.summary()
    return {
        "input": input_path,
        "source": config.source,
        "target": config.target,
        "mode": "realtime" if run.realtime else "fast",
        "audio_seconds": run.duration,
        "wall_seconds": run.wall,
        "transcript": " ".join(c.text for c in run.source_captions).strip(),
        "translation": " ".join(r.translation for r in run.clauses).strip(),
        "clauses": [
            {
                "id": r.clause_id,
                "source": r.source_text,
                "translation": r.translation,
                "source_start": r.source_start,
                "source_end": r.source_end,
                "audio_ready": r.audio_ready,
                "output_start": r.output_start,
                "output_end": r.output_end,
                "ear_voice_span": r.ear_voice_span,
            }
            for r in run.clauses
        ],
        "ear_voice_span": {
            "p50": float(np.percentile(evs, 50)) if evs else None,
            "p95": float(np.percentile(evs, 95)) if evs else None,
            "n": len(evs),
            "note": "live: translated audio start minus the end of the clause's first source word"
            if run.realtime
            else "computation-unaware: clauses placed at their source time; use --realtime for live figures",
        },
        "waterfall": {
            "clauses": [row.to_json() for row in run.waterfall],
            "stage_share": stage_shares(run.waterfall),
            "note": "seconds on the session clock; each interval is one stage's share of the ear-voice span"
            if run.realtime
            else "computation-unaware run: stage times are wall times of a run faster than real time",
        },
        "latency": summary,
        "real_time_factor": {stage: s["compute_total_s"] / run.duration for stage, s in summary.items()},
        "voice_conversion": run.voice,
    }


def run(args: argparse.Namespace) -> int:
    import sys

    from .outputs import check_outputs

    check_outputs(("--out", args.out), ("--report", args.report))  # before minutes of work, not after
    config = SpeechConfig(
        source=args.source,
        target=args.target,
        asr_model=args.asr_model,
        asr_window=EncoderWindow.parse(args.asr_window),
        asr_policy=args.asr_policy,
        clauses=ClauseConfig.sentences() if args.clauses == "sentences" else ClauseConfig(),
        mt_model=args.mt_model,
        tts_backend=args.tts,
        voice_conversion=not args.no_voice_conversion,
    )
    samples = read_audio(args.input, ENGINE_RATE)
    if samples.size < ENGINE_RATE // 10:
        raise MediaError(f"{args.input}: shorter than 0.1 s", "give a recording with speech in it")
    engine = SpeechEngine(config)
    print(f"loading models for {config.source} -> {config.target} ...", file=sys.stderr)
    result = asyncio.run(
        translate_recording(engine, samples, args.realtime, on_progress=lambda m: print(m, file=sys.stderr))
    )
    if not result.clauses:
        raise MediaError(f"{args.input}: no speech was recognised", "check the recording and --source language")
    report = build_report(result, config, str(args.input))
    with atomic_output(args.out) as tmp:
        write_wav(tmp, result.audio, result.sample_rate)
    if args.report:
        write_json(args.report, report)
    evs = report["ear_voice_span"]
    print(f"wrote {args.out} ({result.audio.size / result.sample_rate:.1f} s of {config.target} speech)")
    print(f"transcript:  {report['transcript']}")
    print(f"translation: {report['translation']}")
    if evs["n"] and result.realtime:
        print(f"ear-voice span p50 {evs['p50']:.2f} s, p95 {evs['p95']:.2f} s (live)")
        shares = report["waterfall"]["stage_share"]
        print("where it went (p50): " + ", ".join(f"{k} {v['p50']:.2f} s" for k, v in shares.items()))
    elif evs["n"]:
        print(
            f"ear-voice span p50 {evs['p50']:.2f} s, p95 {evs['p95']:.2f} s (computation-unaware: each clause placed "
            "at its source time, so it can be negative; add --realtime for what a live listener gets)"
        )
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("speech", help="translate a recording: speech in, translated speech in your voice out")
    p.add_argument("input", metavar="IN", help="audio or video file with speech")
    p.add_argument("--source", required=True, help="language spoken in IN (ISO 639-1, e.g. en)")
    p.add_argument("--target", required=True, help="language to speak (e.g. pt)")
    p.add_argument("--out", required=True, help="translated speech, WAV")
    p.add_argument("--report", help="JSON report: transcript, translation, per-clause times, per-stage latency")
    p.add_argument("--realtime", action="store_true", help="pace the input at real time (live latency figures)")
    p.add_argument("--asr-model", default="whisper-base", help="Whisper model name or CTranslate2 folder")
    p.add_argument(
        "--asr-window",
        default=STREAMING_WINDOW.describe(),
        metavar="SPEC",
        help="audio Whisper's encoder sees per streaming step: STEP,MIN,PAD seconds (the buffer plus PAD of "
        "silence, rounded up to a multiple of STEP, at least MIN; default %(default)s, ~3-4x cheaper than Whisper's "
        "30 s padding at the same word error rate), or 'full' to pad every step to 30 s",
    )
    p.add_argument(
        "--asr-policy",
        default="alignatt",
        choices=("alignatt", "local-agreement"),
        help="when heard words become final: alignatt (one Whisper pass per step, words well behind the end of the "
        "audio; default) or local-agreement (two passes must agree: ~0.4 s later)",
    )
    p.add_argument(
        "--clauses",
        default="phrases",
        choices=("phrases", "sentences"),
        help="translation units: phrases of up to 6 words (default, lowest delay) or whole clauses of up to 14 "
        "words (better translations, seconds more delay)",
    )
    p.add_argument("--mt-model", default=None, help="MT model name or CTranslate2 folder (default: by pair)")
    p.add_argument("--tts", default=None, help="TTS backend: piper, kokoro, mms or espeak (default: by language)")
    p.add_argument("--no-voice-conversion", action="store_true", help="keep the TTS voice")
    p.set_defaults(func=run)
