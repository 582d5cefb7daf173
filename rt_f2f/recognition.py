"""The listening half of the engine: VAD -> streaming ASR -> clauses, as one set of settings and one builder.

The call engine (``speech.SpeechEngine``) and a live event's shared source recogniser (``event.source_asr``) both
turn speech into clauses; they build the same three stages from here, so a change to when words are committed or
how clauses are cut reaches both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .asr.window import STREAMING_WINDOW, EncoderWindow
from .clauses import ClauseConfig

if TYPE_CHECKING:
    from .asr.base import Recogniser
    from .critical import CriticalPath
    from .stage import Stage

PAUSE_MS = 300  # non-speech the VAD reports as a pause inside a segment
PAUSE_COMMIT_S = 0.25  # a reported pause this long lets AlignAtt commit every word before it


@dataclass(frozen=True)
class RecognitionConfig:
    vad_aggressiveness: int = 2
    asr_beam_size: int = 1
    asr_window: EncoderWindow = STREAMING_WINDOW  # Whisper's input per step; FULL_WINDOW pads to 30 s as before
    asr_policy: str = "alignatt"  # when heard words are final: "alignatt" (one pass) or "local-agreement" (two)
    asr_step_s: float = 1.0  # new audio between two ASR steps
    asr_margin_s: float = 0.6  # AlignAtt commits words whose aligned end is this far behind the audio heard
    # a pause the VAD hears commits every word before it at once (AlignAtt). Off by default: on en_sample, live, it
    # did not lower the ear-voice span measurably (benchmarks/ab_speech.py, 6 rounds) and once let a word Whisper
    # heard at the very end of the recording through as its own clause
    pause_commit: bool = False
    clauses: ClauseConfig = field(default_factory=ClauseConfig)


def recognition_stages(
    recogniser: Recogniser, language: str | None, config: RecognitionConfig, critical: CriticalPath | None = None
) -> list[Stage]:
    """VAD, ASR and clause stages for ``recogniser`` hearing ``language`` (None: detected per segment); with
    ``critical`` the ASR holds its steps while the TTS beside it voices what a listener waits for."""
    from .asr.policy import POLICIES
    from .asr.stage import ASRStage
    from .clauses import ClauseStage
    from .vad import VADConfig, VADStage

    alignatt = config.asr_policy == "alignatt"
    pause = config.pause_commit and alignatt
    options: dict[str, float | None] = {}
    if alignatt:
        options = {"pause_s": PAUSE_COMMIT_S if pause else None, "margin_s": config.asr_margin_s}
    return [
        VADStage(VADConfig(aggressiveness=config.vad_aggressiveness, pause_ms=PAUSE_MS if pause else 0)),
        ASRStage(
            recogniser,
            language=language,
            beam_size=config.asr_beam_size,
            window=config.asr_window,
            critical=critical,
            policy=lambda transcribe: POLICIES[config.asr_policy](transcribe, min_chunk_s=config.asr_step_s, **options),
        ),
        ClauseStage(config.clauses),
    ]
