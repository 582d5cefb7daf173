"""The text-to-speech interface every backend implements, and the phrase splitter they share.

Speech is made phrase by phrase so a clause's first audio leaves while the rest is still being computed: the
listener hears the translation start after one phrase's synthesis instead of after the whole clause. Backends only
say how to voice one phrase; planning (splitting, bounds, pauses between phrases) lives here so every backend
streams the same way and the TTS stage can know up front which chunk is the last.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np

from ..errors import LanguageError, RtF2fError
from ..languages import validate

MAX_TEXT_CHARS = 4000  # untrusted text is bounded: a clause is a few dozen words; a page is a mistake upstream

_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+|(?<=[。！？])")
_CLAUSE_END = re.compile(r"(?<=[,;:、，；：—])\s+|(?<=[、，；：])")
_SENTENCE_PUNCT = ".!?…。！？"
_CLAUSE_PUNCT = ",;:、，；：—"
_WORDLIKE = re.compile(r"\w")


def split_phrases(text: str, clause_level: bool = False, min_chars: int = 12, max_chars: int = 200) -> list[str]:
    """Cut text into the pieces a backend voices one at a time.

    Sentences always split; with ``clause_level`` commas and semicolons split too (faster first audio for slow
    backends). Pieces shorter than ``min_chars`` join the next one, because a one-word phrase voiced alone sounds
    clipped; pieces longer than ``max_chars`` are cut at clause marks, then at word boundaries, so one model call
    stays bounded. Pieces without a letter or digit ("...", "--") are dropped: they would voice nothing.
    """
    text = " ".join(text.split())
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        clauses = _CLAUSE_END.split(sentence) if clause_level or len(sentence) > max_chars else [sentence]
        for clause in clauses:
            pieces.extend(_cut_words(clause.strip(), max_chars))
    merged: list[str] = []
    carry = ""
    for piece in pieces:
        if carry and len(carry) + 1 + len(piece) > max_chars:  # a short piece stays alone rather than overflow
            merged.append(carry)
            carry = ""
        joined = f"{carry} {piece}" if carry else piece
        if len(joined) < min_chars:
            carry = joined
            continue
        merged.append(joined)
        carry = ""
    if carry:
        if merged and len(merged[-1]) + len(carry) + 1 <= max_chars:
            merged[-1] = f"{merged[-1]} {carry}"
        else:
            merged.append(carry)
    return [p for p in merged if _WORDLIKE.search(p)]


def _cut_words(text: str, max_chars: int) -> list[str]:
    if len(text) <= max_chars:
        return [text] if text else []
    out: list[str] = []
    current = ""
    for word in text.split(" "):
        while len(word) > max_chars:  # a run with no spaces (CJK, URLs): cut it hard
            if current:
                out.append(current)
                current = ""
            out.append(word[:max_chars])
            word = word[max_chars:]
        if current and len(current) + 1 + len(word) > max_chars:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    if current:
        out.append(current)
    return out


def split_first(phrases: list[str], words: int | None) -> list[str]:
    """Cut the first phrase after ``words`` words when it has at least two more than that (a short tail would sound
    clipped); the rest of it becomes the second phrase. None leaves the plan as it is."""
    if not phrases or words is None:
        return phrases
    tokens = phrases[0].split(" ")
    if len(tokens) < words + 2:
        return phrases
    return [" ".join(tokens[:words]), " ".join(tokens[words:]), *phrases[1:]]


def pause_after(phrase: str) -> float:
    """Seconds of silence a listener expects after this phrase: longer after a sentence than after a comma."""
    tail = phrase.rstrip()[-1:] if phrase.strip() else ""
    if tail and tail in _SENTENCE_PUNCT:
        return 0.25
    if tail and tail in _CLAUSE_PUNCT:
        return 0.1
    return 0.0


def check_text(text: str) -> str:
    if not isinstance(text, str):
        raise RtF2fError(f"text to speak must be a string, got {type(text).__name__}", "pass the translated text")
    if len(text) > MAX_TEXT_CHARS:
        raise RtF2fError(
            f"text to speak is {len(text)} characters; the limit is {MAX_TEXT_CHARS}",
            "split long text into sentences or clauses before synthesis",
        )
    return text


class Synthesizer(ABC):
    """A text-to-speech backend: mono float32 audio at ``sample_rate``, one chunk per phrase.

    Subclasses set ``name``, ``sample_rate`` and ``languages`` (ISO 639-1 codes) and implement
    ``synthesize_phrase``; ``clause_level`` says whether to split at commas too (worth it for slow backends),
    ``pause_scale`` scales the pause put before each phrase after the first (0 for backends whose audio already
    ends in silence). A backend whose model can speak faster (Kokoro's ``speed``, Piper's ``length_scale``,
    espeak-ng's words per minute) sets ``rate_control`` and takes ``speed`` in ``synthesize_phrase``: speaking
    faster in the model sounds natural where time-stretching the audio afterwards does not, and costs less compute
    (the vocoder makes fewer frames).
    """

    name: str = "tts"
    sample_rate: int = 22050
    languages: frozenset[str] = frozenset()
    clause_level: bool = False
    min_phrase_chars: int = 12
    max_phrase_chars: int = 200
    pause_scale: float = 1.0
    rate_control: bool = False

    def supports(self, language: str) -> bool:
        try:
            return validate(language) in self.languages
        except LanguageError:
            return False

    def check_language(self, language: str) -> str:
        code = validate(language)
        if code not in self.languages:
            raise LanguageError(
                f"the {self.name} voice does not speak '{code}'",
                f"it speaks {', '.join(sorted(self.languages)) or 'nothing'}; pick another backend or voice",
            )
        return code

    def plan(self, text: str, language: str) -> list[str]:
        """The phrases ``stream`` will voice, in order (empty for text with nothing to say)."""
        self.check_language(language)
        return split_phrases(check_text(text), self.clause_level, self.min_phrase_chars, self.max_phrase_chars)

    @abstractmethod
    def synthesize_phrase(self, phrase: str, language: str) -> np.ndarray:
        """Voice one phrase: mono float32 in [-1, 1] at ``sample_rate`` (the language is already checked).
        Backends with ``rate_control`` also take ``speed`` (1.0 = the voice's own rate, 1.25 = 25 % faster)."""

    def phrase_audio(self, phrases: list[str], index: int, language: str, speed: float = 1.0) -> np.ndarray:
        """Phrase ``index`` of a plan, with the pause the previous phrase calls for put in front of it.

        The pause goes before the next phrase rather than after the current one so a clause never ends in
        added silence and no chunk waits for its successor to be planned. Faster speech gets shorter pauses too.
        """
        phrase = phrases[index]
        speed = min(max(float(speed), 0.5), 2.0)
        raw = (
            self.synthesize_phrase(phrase, language, speed=speed)
            if self.rate_control and speed != 1.0
            else (self.synthesize_phrase(phrase, language))
        )
        audio = np.asarray(raw, dtype=np.float32).reshape(-1)
        if index > 0 and self.pause_scale > 0:
            pause = pause_after(phrases[index - 1]) * self.pause_scale / speed
            gap = int(round(pause * self.sample_rate))
            if gap:
                audio = np.concatenate([np.zeros(gap, np.float32), audio])
        return np.clip(audio, -1.0, 1.0)

    def stream(self, text: str, language: str) -> Iterator[np.ndarray]:
        """Yield audio phrase by phrase, each as soon as it is made."""
        phrases = self.plan(text, language)
        for i in range(len(phrases)):
            yield self.phrase_audio(phrases, i, language)

    def synthesize(self, text: str, language: str) -> np.ndarray:
        """The whole text at once (for files and tests; live use goes through ``stream``)."""
        chunks = list(self.stream(text, language))
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    def describe(self) -> str:
        return f"{self.name} ({self.sample_rate} Hz; {', '.join(sorted(self.languages))})"
