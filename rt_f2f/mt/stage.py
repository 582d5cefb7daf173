"""The MT stage: clauses in, translations out, one model call per clause on the stage's worker thread.

Context (off by default): with ``context=True`` and a backend that supports it (CTranslate2), each clause is
translated as the continuation of the previous clause of the same utterance, by forcing the decoder through the
previous translation (see ``CT2Translator.translate_next``). It helps pronouns, gender and register across clause
breaks but roughly doubles the encoder's input, and a model can be thrown by a prefix it would not have chosen.
So it stays opt-in until a benchmark on real models shows it pays. Context resets at the end of each utterance
(end of speech, interruption, flush) and after a long pause, since an old clause is no longer context.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from ..frames import Clause, ControlEvent, ControlKind, Frame, Translation
from ..stage import Stage
from .base import TranslationContext, Translator

_RESETS = {ControlKind.END_OF_SPEECH, ControlKind.INTERRUPTION, ControlKind.FLUSH, ControlKind.END_OF_STREAM}


class MTStage(Stage):
    """``Clause`` -> ``Translation``; control events pass through (and end the context).

    The stage does not own the translator: whoever built it closes it, so one model can serve several sessions.
    """

    name = "mt"

    def __init__(self, translator: Translator, context: bool = False, max_context_gap: float = 2.0) -> None:
        super().__init__()
        self.translator = translator
        self.use_context = context and translator.supports_context
        self.max_context_gap = max_context_gap
        self._previous: tuple[Clause, str] | None = None

    async def process(self, item: Frame) -> AsyncIterator[Frame]:
        if isinstance(item, ControlEvent):
            if item.kind in _RESETS:
                self._previous = None
            yield item
            return
        if not isinstance(item, Clause):
            raise TypeError(f"MTStage takes Clause or ControlEvent frames, got {type(item).__name__}")
        if not item.text.strip():
            return
        wall_in = time.perf_counter()
        if item.language == self.translator.target:
            text = item.text  # the speaker switched to the listener's language: nothing to translate
            self._previous = None
        else:
            text = await self.in_worker(self._translate, item)
            self._previous = (item, text) if text else None
        out = Translation(source=item, text=text, language=self.translator.target)
        self.record(item.pts, out.pts, wall_in)
        yield out

    def _translate(self, clause: Clause) -> str:
        context = None
        if self.use_context and self._previous is not None:
            previous, translated = self._previous
            if clause.pts - previous.end <= self.max_context_gap:
                context = TranslationContext(previous.text, translated)
        if context is None:
            return self.translator.translate([clause.text])[0]
        return self.translator.translate_next(clause.text, context)
