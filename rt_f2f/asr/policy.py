"""Streaming commit policies: when may words heard so far be passed on as final?

Whisper is an offline model: it sees a whole buffer and may revise its guess about the last words when more
audio arrives. ``LocalAgreementPolicy`` (LocalAgreement-2, Machacek et al. 2023, "Turning Whisper into Real-Time
Transcription System") re-transcribes a growing buffer and commits only the words on which the last two
hypotheses agree, aligning them by time so words already committed are not committed again. Committed text is
passed back as Whisper's prompt, and the buffer is cut at committed sentence ends (or when it passes a cap) so each
call stays short. ``FixedChunkPolicy`` is the naive baseline the benchmark compares it with: cut the stream into
1 s chunks and trust each chunk's transcript at once.

Both take a ``transcribe(audio, offset, prompt) -> list[Word]`` callable and know nothing of Whisper, so the
policy logic is tested with synthetic hypotheses. ``asr.stage.ASRStage`` binds a recogniser to a policy inside a
pipeline; ``asr.replay`` runs one over a recording on a simulated live clock.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..frames import Word, join_words
from ..rates import ENGINE_RATE

PAUSE_WORD_SLACK_S = 0.15  # how far past the VAD's end of speech Whisper's aligned word end may fall
TranscribeFn = Callable[[np.ndarray, float, str], Sequence[Word]]

_NON_WORD = re.compile(r"[^\w']+")
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*$")


def normalise(text: str) -> str:
    """The form two hypotheses are compared in: case and punctuation do not decide agreement."""
    return _NON_WORD.sub("", text.lower())


def ends_sentence(word: Word) -> bool:
    return bool(_SENTENCE_END.search(word.text.strip()))


@dataclass(frozen=True)
class PolicyUpdate:
    """One step's result: words committed by this step, and the current guess after all committed words."""

    committed: tuple[Word, ...]
    partial: tuple[Word, ...]


DENSE_RUN = 4  # this many words in a row ...
DENSE_SPAN_S = 0.25  # ... within this span are not speech (about 4x the fastest speaking rate)


def _until_dense_run(words: list[Word]) -> list[Word]:
    """The words before the first run no one could have said: Whisper, given near-silence and a prompt, may
    repeat the prompt with every word squeezed into a fraction of a second; committed, that is a whole sentence
    said twice."""
    for i in range(len(words) - DENSE_RUN + 1):
        if words[i + DENSE_RUN - 1].end - words[i].start < DENSE_SPAN_S:
            return words[:i]
    return words


def _sanitise(words: Sequence[Word], not_before: float = float("-inf")) -> list[Word]:
    """Words in time order with blank ones dropped; a recogniser that goes back in time is not trusted there."""
    out: list[Word] = []
    for w in words:
        if not w.text.strip() or w.start < not_before or (out and w.start < out[-1].start):
            continue
        out.append(w if w.end >= w.start else Word(w.text, w.start, w.start, w.probability))
    return out


class StreamingPolicy(ABC):
    """Audio of one speech segment in, committed words out; committed words are never revised."""

    def __init__(self, transcribe: TranscribeFn, sample_rate: int = ENGINE_RATE, prompt_chars: int = 200) -> None:
        self.transcribe = transcribe
        self.sample_rate = sample_rate
        self.prompt_chars = prompt_chars
        self._context = ""  # committed text of earlier segments, carried into the prompt
        self.start_segment(0.0)

    def start_segment(self, pts: float) -> None:
        """Forget the previous segment's audio (its committed text stays as prompt context)."""
        if getattr(self, "_committed", None):
            self._context = (self._context + " " + join_words(self._committed)).strip()[-4 * self.prompt_chars :]
        self._buffer = np.zeros(0, np.float32)
        self._offset = float(pts)  # session time of the buffer's first sample
        self._unprocessed = 0  # samples pushed since the last transcription
        self._committed: list[Word] = []
        self._silence_s = 0.0  # non-speech at the end of the buffer, as the VAD heard it

    @property
    def committed(self) -> tuple[Word, ...]:
        return tuple(self._committed)

    @property
    def audio_end(self) -> float:
        """Session time of the end of the audio pushed so far."""
        return self._offset + self._buffer.size / self.sample_rate

    def push(self, samples: np.ndarray, trailing_silence_s: float = 0.0) -> None:
        """Append audio; ``trailing_silence_s``: how much of the buffer's end the VAD heard as non-speech."""
        samples = np.asarray(samples, np.float32)
        self._buffer = np.concatenate([self._buffer, samples])
        self._unprocessed += samples.size
        self._silence_s = min(float(trailing_silence_s), self._buffer.size / self.sample_rate)

    @property
    def voiced_end(self) -> float:
        """Session time where the buffer's last speech ends."""
        return self.audio_end - self._silence_s

    def _prompt(self, extra: Sequence[Word] = ()) -> str:
        text = (self._context + " " + join_words(list(extra))).strip()
        if len(text) <= self.prompt_chars:
            return text
        cut = text[-self.prompt_chars :]
        return cut[cut.find(" ") + 1 :] if " " in cut else cut

    def _run(self, audio: np.ndarray, offset: float, prompt: str) -> list[Word]:
        self._unprocessed = 0
        return list(self.transcribe(audio, offset, prompt))

    @abstractmethod
    def ready(self) -> bool:
        """Enough new audio for a step to be worth its cost."""

    @abstractmethod
    def step(self) -> PolicyUpdate:
        """Transcribe and commit what may be committed."""

    @abstractmethod
    def finish(self) -> PolicyUpdate:
        """The speaker paused: commit everything that is left."""


class LocalAgreementPolicy(StreamingPolicy):
    """LocalAgreement-2 over a growing buffer that is trimmed at committed sentence ends."""

    def __init__(
        self,
        transcribe: TranscribeFn,
        min_chunk_s: float = 1.0,
        buffer_cap_s: float = 15.0,
        hard_cap_s: float = 20.0,
        time_tolerance_s: float = 0.1,
        sample_rate: int = ENGINE_RATE,
        prompt_chars: int = 200,
    ) -> None:
        self.min_chunk_s = min_chunk_s
        self.buffer_cap_s = buffer_cap_s
        self.hard_cap_s = max(hard_cap_s, buffer_cap_s + 1.0)
        self.time_tolerance_s = time_tolerance_s
        super().__init__(transcribe, sample_rate, prompt_chars)

    def start_segment(self, pts: float) -> None:
        super().start_segment(pts)
        self._tail: list[Word] = []  # the last hypothesis after the committed words
        self._ran = False
        self._in_buffer = 0  # committed[:_in_buffer] lie before the buffer: they are the prompt, not re-heard

    def ready(self) -> bool:
        return self._unprocessed >= self.min_chunk_s * self.sample_rate

    def _hypothesis(self) -> list[Word]:
        """Transcribe the buffer; keep only the words after what is committed."""
        self._ran = True
        prompt = self._prompt(self._committed[: self._in_buffer])
        words = _until_dense_run(_sanitise(self._run(self._buffer, self._offset, prompt)))
        if not self._committed:
            return words
        last = self._committed[-1]
        words = [w for w in words if w.start > last.end - self.time_tolerance_s and w.start >= last.start]
        # a committed word re-heard with a shifted time survives the filter above; drop the longest repeat of
        # the committed tail (1-5 words) that the new guess starts with, as long as it starts near the tail
        # (only words still in the buffer can be heard again: a repeat across a cut is real speech)
        heard = self._committed[self._in_buffer :]
        if words and abs(words[0].start - last.end) < 1.0:
            for n in range(1, min(5, len(heard), len(words)) + 1):
                tail = [normalise(w.text) for w in heard[-n:]]
                if tail == [normalise(w.text) for w in words[:n]]:
                    words = words[n:]
                    break
        return words

    def step(self) -> PolicyUpdate:
        new = self._hypothesis()
        agreed = 0
        for old, fresh in zip(self._tail, new, strict=False):
            if normalise(old.text) != normalise(fresh.text):
                break
            agreed += 1
        commit = new[:agreed]
        self._committed += commit
        self._tail = new[agreed:]
        commit += self._trim()
        return PolicyUpdate(tuple(commit), tuple(self._tail))

    def finish(self) -> PolicyUpdate:
        if self._unprocessed or not self._ran:
            self._tail = self._hypothesis() if self._buffer.size else []
        commit, self._tail = self._tail, []
        self._committed += commit
        return PolicyUpdate(tuple(commit), ())

    def _cut(self, at: float) -> None:
        """Drop buffered audio before session time ``at``; committed words ending by then become prompt."""
        drop = min(self._buffer.size, max(0, int(round((at - self._offset) * self.sample_rate))))
        self._buffer = self._buffer[drop:]
        self._offset += drop / self.sample_rate
        while self._in_buffer < len(self._committed) and self._committed[self._in_buffer].end <= self._offset + 1e-6:
            self._in_buffer += 1

    def _trim(self) -> list[Word]:
        """Keep the buffer short: cut at the last committed sentence end, or at the last committed word past the
        cap; past the hard cap, commit what is older than a second and cut there (bounded work beats waiting)."""
        heard = self._committed[self._in_buffer :]
        ends = [w.end for w in heard if ends_sentence(w)]
        if ends:
            self._cut(ends[-1])
        duration = self._buffer.size / self.sample_rate
        if duration > self.buffer_cap_s and self._committed[self._in_buffer :]:
            self._cut(self._committed[-1].end)
        forced: list[Word] = []
        if self._buffer.size / self.sample_rate > self.hard_cap_s:
            limit = self.audio_end - 1.0
            while self._tail and self._tail[0].end <= limit:
                forced.append(self._tail.pop(0))
            self._committed += forced
            if self._committed[self._in_buffer :]:
                self._cut(self._committed[-1].end)
            if self._buffer.size / self.sample_rate > self.hard_cap_s:
                self._cut(self.audio_end - self.buffer_cap_s)  # nothing recognisable in it: let the oldest go
        return forced


class AlignAttPolicy(LocalAgreementPolicy):
    """One decoder pass per step: commit the words whose audio is safely behind the end of the buffer.

    AlignAtt (Papi et al., Interspeech 2023; used for Whisper in SimulStreaming, Macháček et al. 2025) lets the
    decoder emit a token only while its cross-attention points at audio that is not among the last ``f`` frames:
    a token that attends to the very end of the buffer is about sound that may still be cut mid-word, so it waits
    for more audio. Whisper's word timestamps are that same signal: faster-whisper aligns each word to the audio by
    dynamic time warping over the cross-attention of Whisper's alignment heads. So each step decodes the buffer
    once and commits the longest prefix of the new words whose aligned end lies at least ``margin_s`` before the
    end of the audio heard; the rest stays partial. LocalAgreement-2 instead needs the next step to repeat a word
    before it commits it, which costs one step (``min_chunk_s``) of latency per word.

    Unlike the paper's policy, decoding is not stopped at the first unstable token (faster-whisper decodes whole
    windows); the words past the margin are shown as the partial guess. Buffer trimming, prompting and the
    re-heard-word filter are LocalAgreement-2's.
    """

    def __init__(
        self, transcribe: TranscribeFn, margin_s: float = 0.6, pause_s: float | None = 0.25, **kwargs: Any
    ) -> None:
        if margin_s < 0:
            raise ValueError("margin_s must be >= 0")
        if pause_s is not None and pause_s <= 0:
            raise ValueError("pause_s must be > 0 (or None: never commit at pauses)")
        self.margin_s = margin_s
        self.pause_s = pause_s
        super().__init__(transcribe, **kwargs)

    def start_segment(self, pts: float) -> None:
        super().start_segment(pts)
        self._paused_at: float | None = None  # voiced end of the last pause a step committed up to

    @property
    def paused(self) -> bool:
        """The speaker has paused (the VAD heard at least ``pause_s`` of non-speech at the end of the buffer)."""
        return self.pause_s is not None and self._silence_s >= self.pause_s

    def _pause_is_new(self) -> bool:
        return self._paused_at is None or self.voiced_end > self._paused_at + 1e-3

    def ready(self) -> bool:
        """Every ``min_chunk_s`` of new audio, and at once when the speaker pauses after new speech: every word
        before a pause is whole, so the step commits them all instead of waiting ``margin_s`` and a step."""
        return super().ready() or (self.paused and self._unprocessed > 0 and self._pause_is_new())

    def step(self) -> PolicyUpdate:
        paused = self.paused
        new = self._hypothesis()
        # at a pause every word up to the end of the speech is whole; a "word" in the silence after it is Whisper
        # hallucinating and stays a guess
        limit = self.voiced_end + PAUSE_WORD_SLACK_S if paused else self.audio_end - self.margin_s
        if paused:
            self._paused_at = self.voiced_end
        stable = 0
        while stable < len(new) and new[stable].end <= limit:
            stable += 1
        commit = new[:stable]
        self._committed += commit
        self._tail = new[stable:]
        commit += self._trim()
        return PolicyUpdate(tuple(commit), tuple(self._tail))

    def finish(self) -> PolicyUpdate:
        if self._ran and not self._tail and not self._pause_is_new():
            self._unprocessed = 0  # only silence since a pause step committed every word: no decode to pay for
        return super().finish()


POLICIES: dict[str, Callable[..., StreamingPolicy]] = {
    "alignatt": AlignAttPolicy,
    "local-agreement": LocalAgreementPolicy,
}


class FixedChunkPolicy(StreamingPolicy):
    """Baseline: each ``chunk_s`` of audio is transcribed on its own and committed at once."""

    def __init__(
        self,
        transcribe: TranscribeFn,
        chunk_s: float = 1.0,
        use_prompt: bool = False,
        sample_rate: int = ENGINE_RATE,
        prompt_chars: int = 200,
    ) -> None:
        self.chunk_s = chunk_s
        self.use_prompt = use_prompt
        super().__init__(transcribe, sample_rate, prompt_chars)

    def ready(self) -> bool:
        return self._buffer.size >= self.chunk_s * self.sample_rate

    def _commit_chunk(self, audio: np.ndarray) -> list[Word]:
        prompt = self._prompt(self._committed) if self.use_prompt else ""
        not_before = self._committed[-1].start if self._committed else float("-inf")
        words = _sanitise(self._run(audio, self._offset, prompt), not_before)
        self._committed += words
        self._offset += audio.size / self.sample_rate
        return words

    def step(self) -> PolicyUpdate:
        n = int(round(self.chunk_s * self.sample_rate))
        commit: list[Word] = []
        while self._buffer.size >= n:
            chunk, self._buffer = self._buffer[:n], self._buffer[n:]
            commit += self._commit_chunk(chunk)
        return PolicyUpdate(tuple(commit), ())

    def finish(self) -> PolicyUpdate:
        commit = list(self.step().committed)
        if self._buffer.size >= self.sample_rate // 10:
            rest, self._buffer = self._buffer, np.zeros(0, np.float32)
            commit += self._commit_chunk(rest)
        self._buffer = np.zeros(0, np.float32)
        return PolicyUpdate(tuple(commit), ())
