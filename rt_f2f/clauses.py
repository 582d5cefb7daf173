"""Committed words -> clauses: the units machine translation gets.

Translating word by word gives nonsense and waiting for whole sentences adds seconds of delay, so the words are
cut where a translator can start: at sentence or clause punctuation, at a comma once the clause has a few words,
at a pause in the speech, or at a length cap. The end of a speech segment flushes what is left. Abbreviations
("Mr.", "e.g.") are not sentence ends, or "Mr. Dashwood" would be translated as two clauses.

A clause's ear-voice span can never be shorter than the time its speaker takes to say it, so the live default cuts
phrases, not sentences: at most ``max_words`` (6) words, as interpreters chunk. A cap that lands mid-phrase moves
back to the nearest word that starts a phrase (a conjunction, a relative pronoun, a preposition: "and", "that",
"which", "is"; failing those a preposition, per language), so "unless to be rather cold-hearted and rather selfish" goes out as "unless to be
rather cold-hearted" + "and rather selfish" rather than "... cold-hearted and" + "rather selfish".
``ClauseConfig.sentences()`` is the earlier sentence-level policy (better translations, seconds more delay).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from .errors import RtF2fError
from .frames import Clause, ControlEvent, ControlKind, Frame, Transcript, Word, join_words
from .stage import Stage

_STRONG = re.compile(r"[.!?;:…。！？；：][\"'”’)\]]*$")
_NON_WORD = re.compile(r"[^\w'-]+")
_COMMA = re.compile(r"[,，、][\"'”’)\]]*$")
# titles and Latin abbreviations that sit inside sentences (not "etc." or "a.m.", which often end one)
ABBREVIATIONS = frozenset("mr mrs ms dr prof sr jr st mt vs e.g i.e cf approx fig vol sra srta dra z.b d.h bzw".split())


# Words that start a phrase, per language, in two tiers: conjunctions, relative pronouns and copulas begin a new
# clause-like unit; prepositions only a smaller one. A cap moves back to the last strong start, else the last weak one.
PHRASE_STARTS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    lang: (frozenset(strong.split()), frozenset(weak.split()))
    for lang, strong, weak in (
        (
            "en",
            "and or but nor so yet unless because although though while whereas if when whenever where whether that "
            "which who whom whose than is was are were",
            "to for of in on at with without from into about after before since until as",
        ),
        (
            "pt",
            "e ou mas porque embora enquanto se quando onde que qual quem é era são foram",
            "para por de em com sem",
        ),
        (
            "es",
            "y o pero porque aunque mientras si cuando donde que cual quien es era son fueron",
            "para por de en con sin",
        ),
        (
            "fr",
            "et ou mais car parce si quand lorsque où que qui dont est était sont",
            "pour par de dans sur avec sans",
        ),
        ("de", "und oder aber denn weil obwohl während wenn als wo dass ob ist war sind", "um für von in mit ohne"),
        ("it", "e o ma perché sebbene mentre se quando dove che quale chi è era sono", "per da di in con senza"),
    )
}


@dataclass(frozen=True)
class ClauseConfig:
    comma_min_words: int = 3  # a comma ends a clause only once it holds this many words
    pause_s: float = 0.35  # a silence this long between words ends a clause
    max_words: int = 6  # no clause grows past this
    min_words: int = 2  # a cap never leaves a clause shorter than this when it moves back to a phrase start

    def __post_init__(self) -> None:
        if self.max_words < 1 or self.comma_min_words < 1 or self.pause_s <= 0 or self.min_words < 1:
            raise RtF2fError(
                f"invalid clause settings {self}",
                "max_words, min_words and comma_min_words must be >= 1 and pause_s > 0",
            )

    @classmethod
    def sentences(cls) -> ClauseConfig:
        """The sentence-level policy rt-f2f used before phrase chunking: whole clauses of up to 14 words."""
        return cls(comma_min_words=4, pause_s=0.5, max_words=14, min_words=14)


def _is_abbreviation(text: str) -> bool:
    token = text.strip().lower()
    return token.endswith(".") and token[:-1].lstrip("\"'“(") in ABBREVIATIONS


def ends_clause(word: Word, words_so_far: int, config: ClauseConfig) -> bool:
    """Does the clause end after ``word`` (the ``words_so_far``-th word of it) by its punctuation?"""
    text = word.text.strip()
    if _STRONG.search(text):
        return not _is_abbreviation(text)
    return bool(_COMMA.search(text)) and words_so_far >= config.comma_min_words


class ClauseSegmenter:
    """Feed committed words in order; get clauses. Each word goes into exactly one clause."""

    def __init__(self, config: ClauseConfig | None = None) -> None:
        self.config = config or ClauseConfig()
        self._pending: list[Word] = []
        self._language = ""
        self._next_id = 0

    @property
    def pending(self) -> tuple[Word, ...]:
        return tuple(self._pending)

    def _cut(self, keep: int = 0) -> list[Clause]:
        """Send the pending words out as one clause, except the last ``keep``, which start the next one."""
        if len(self._pending) <= keep:
            return []
        split = len(self._pending) - keep
        words, self._pending = tuple(self._pending[:split]), self._pending[split:]
        clause = Clause(join_words(words), words, self._language, self._next_id)
        self._next_id += 1
        return [clause]

    def push(self, words: Sequence[Word], language: str = "") -> list[Clause]:
        out: list[Clause] = []
        for word in words:
            if language != self._language:
                out += self._cut()  # a clause holds one language
                self._language = language
            if self._pending and word.start - self._pending[-1].end >= self.config.pause_s:
                out += self._cut()
            self._pending.append(word)
            if ends_clause(word, len(self._pending), self.config):
                out += self._cut()
            elif len(self._pending) >= self.config.max_words:
                out += self._cut(keep=self._phrase_tail())
        return out

    def _phrase_tail(self) -> int:
        """How many of the last pending words to carry into the next clause at a cap: from the last word that starts
        a phrase, if it leaves at least ``min_words`` behind; else none."""
        tiers = PHRASE_STARTS.get(self._language.split("-")[0].lower(), ())
        tokens = [_NON_WORD.sub("", w.text.lower()) for w in self._pending]
        for starts in tiers:
            for i in range(len(tokens) - 1, self.config.min_words - 1, -1):
                if tokens[i] in starts:
                    return len(tokens) - i
        return 0

    def flush(self) -> list[Clause]:
        return self._cut()


class ClauseStage(Stage):
    """Transcript -> Clause: takes each transcript's newly committed words; a final transcript flushes.

    Transcripts repeat all committed words of their segment, so the stage remembers how many it has taken per
    segment and never takes a word twice. Control events pass through after a flush.
    """

    name = "clauses"

    def __init__(self, config: ClauseConfig | None = None) -> None:
        super().__init__()
        self.segmenter = ClauseSegmenter(config)
        self._segment_id: int | None = None
        self._finished: int | None = None  # the last segment whose final transcript was taken
        self._taken = 0
        self._heard = 0.0  # where the last words given end: the media time a flush at the end answers

    def _emit(self, clauses: list[Clause], media_in: float, wall_in: float) -> list[Clause]:
        for clause in clauses:
            self.record(media_in, clause.end, wall_in)
        return clauses

    async def process(self, item: Frame) -> AsyncIterator[Frame]:
        wall_in = time.perf_counter()
        if isinstance(item, ControlEvent):
            if item.kind != ControlKind.INTERRUPTION:
                for clause in self._emit(self.segmenter.flush(), item.pts, wall_in):
                    yield clause
            yield item
            return
        if not isinstance(item, Transcript):
            raise TypeError(f"ClauseStage takes Transcript or ControlEvent, not {type(item).__name__}")
        if item.segment_id == self._finished:
            return  # a late copy of a finished segment: its words have all gone out
        out: list[Clause] = []
        if item.segment_id != self._segment_id:
            out += self.segmenter.flush()  # a segment that never sent its final transcript
            self._segment_id, self._taken = item.segment_id, 0
        fresh = item.committed[self._taken :]
        self._taken = max(self._taken, len(item.committed))
        out += self.segmenter.push(fresh, item.language)
        if item.final:
            out += self.segmenter.flush()
            self._finished, self._segment_id, self._taken = item.segment_id, None, 0
        media_in = item.committed[-1].end if item.committed else item.pts
        self._heard = media_in
        for clause in self._emit(out, media_in, wall_in):
            yield clause

    async def flush(self) -> AsyncIterator[Frame]:
        for clause in self._emit(self.segmenter.flush(), self._heard, time.perf_counter()):
            yield clause
