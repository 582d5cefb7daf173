"""The ASR pipeline stage: a recogniser bound to a streaming commit policy.

The stage owns the segment bookkeeping (which audio is new, which language the segment is in) and runs the
recogniser on its worker thread; the policy decides what is final. Any ``asr.base.Recogniser`` serves.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import numpy as np

from ..audio import resample
from ..critical import CriticalPath
from ..frames import ControlEvent, ControlKind, Frame, SpeechSegment, Transcript, Word
from ..stage import Stage
from .base import Recogniser
from .policy import LocalAgreementPolicy, PolicyUpdate, StreamingPolicy, TranscribeFn
from .window import STREAMING_WINDOW, EncoderWindow

PolicyFactory = Callable[[TranscribeFn], StreamingPolicy]


class ASRStage(Stage):
    """SpeechSegment -> Transcript: committed words so far in the segment plus the current partial guess.

    The VAD sends each segment growing (``final=False``) and then final; this stage feeds only the new audio to
    its policy, runs a step on its worker thread when the policy has enough new audio, and finishes the segment
    (a ``final=True`` transcript) when the VAD closes it. With no language given, each segment's language is the
    one Whisper detects on its first step. Latency records: media in = end of the audio heard, media out = end of
    the last committed word of the segment. Each step pads the buffer to ``window`` rather than Whisper's 30 s
    (``STREAMING_WINDOW``: ~3-4x cheaper per call on 2 cores at the same word error rate; ``FULL_WINDOW`` restores
    the old behaviour). With ``critical``, a step that is ready while the TTS voices audio a listener waits for is
    held back (the stage keeps taking in audio) until the TTS is idle or the bound passes (``critical.CriticalPath``).
    """

    name = "asr"

    def __init__(
        self,
        recogniser: Recogniser,
        language: str | None = None,
        policy: PolicyFactory | None = None,
        beam_size: int = 1,
        window: EncoderWindow = STREAMING_WINDOW,
        critical: CriticalPath | None = None,
    ) -> None:
        super().__init__()
        self.critical = critical
        self.recogniser = recogniser
        self.language = recogniser.check_language(language)
        self.beam_size = beam_size
        self.window = window
        self.policy = (policy or LocalAgreementPolicy)(self._transcribe)
        self._segment_id: int | None = None
        self._segment_language: str | None = None
        self._consumed = 0

    def _transcribe(self, audio: np.ndarray, offset: float, prompt: str) -> list[Word]:
        result = self.recogniser.transcribe(
            audio,
            language=self._segment_language,
            prompt=prompt,
            offset=offset,
            beam_size=self.beam_size,
            window=self.window,
        )
        if self._segment_language is None and result.language:
            self._segment_language = result.language
        return list(result.words)

    def _transcript(self, update: PolicyUpdate, final: bool) -> Transcript:
        return Transcript(
            self.policy.committed, update.partial, self._segment_language or "", self._segment_id, final=final
        )

    async def _held(self) -> bool:
        return self.critical is not None and await self.critical.hold(self.policy.audio_end)

    async def _finish(self, wall_in: float) -> AsyncIterator[Transcript]:
        if self.critical is not None:
            self.critical.release()  # never held: the segment's last words commit now
        update = await self.in_worker(self.policy.finish)
        transcript = self._transcript(update, final=True)
        self._record(wall_in)
        self._segment_id = None
        yield transcript

    def _record(self, wall_in: float) -> None:
        committed = self.policy.committed
        self.record(self.policy.audio_end, committed[-1].end if committed else self.policy.audio_end, wall_in)

    async def process(self, item: Frame) -> AsyncIterator[Frame]:
        wall_in = time.perf_counter()
        if isinstance(item, ControlEvent):
            if self._segment_id is not None and item.kind != ControlKind.INTERRUPTION:
                async for transcript in self._finish(wall_in):
                    yield transcript
            yield item
            return
        if not isinstance(item, SpeechSegment):
            raise TypeError(f"ASRStage takes SpeechSegment or ControlEvent, not {type(item).__name__}")
        if item.segment_id != self._segment_id:
            if self._segment_id is not None:  # the VAD never closed the last one: close it now
                async for transcript in self._finish(wall_in):
                    yield transcript
            self._segment_id = item.segment_id
            self._segment_language = self.language
            self._consumed = 0
            self.policy.start_segment(item.pts)
        samples = item.audio.samples
        if item.audio.sample_rate != self.policy.sample_rate:
            samples = resample(samples, item.audio.sample_rate, self.policy.sample_rate)
        self.policy.push(samples[self._consumed :], item.trailing_silence_s)
        self._consumed = max(self._consumed, samples.size)
        if item.final:
            async for transcript in self._finish(wall_in):
                yield transcript
        elif self.policy.ready() and not await self._held():
            started = time.perf_counter()  # a hold is the gate's to count (CriticalPath.waited_s), not ASR compute
            update = await self.in_worker(self.policy.step)
            self._record(started)
            yield self._transcript(update, final=False)

    async def flush(self) -> AsyncIterator[Frame]:
        if self._segment_id is not None:
            async for transcript in self._finish(time.perf_counter()):
                yield transcript
