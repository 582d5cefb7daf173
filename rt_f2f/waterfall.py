"""Where each clause's time went: a per-clause latency waterfall, from the speaker's words to the listener's ear.

For every clause the engine translates, the recorder notes (on the session clock, seconds since the first input
sample) when its source speech ended, when the ASR committed its last word (the clause left the segmenter), when its
translation, its first synthesised audio and its first voice-converted audio existed, and when its translated speech
was placed on the output and heard. The differences between neighbouring marks are each stage's share of the
ear-voice span, so a change shows at once which stage it moved. The recorder only observes frames the pipeline
already emits (through the pipeline's tap), so it costs nothing on the critical path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .frames import Clause, SpeechChunk, Translation

# (mark, label of the interval that ends at that mark), in pipeline order
MARKS: tuple[tuple[str, str], ...] = (
    ("source_end", "speaking (first word end -> clause end)"),
    ("asr_commit", "ASR commit after speech end"),
    ("mt_done", "MT"),
    ("tts_first", "TTS first audio"),
    ("vc_first", "voice conversion"),
    ("placed", "placing (queue behind earlier speech)"),
)


@dataclass
class ClauseWaterfall:
    """Session times of one clause's milestones (None: the clause never reached that point)."""

    clause_id: int
    text: str
    first_word_end: float
    source_end: float
    asr_commit: float | None = None
    mt_done: float | None = None
    tts_first: float | None = None
    vc_first: float | None = None
    placed: float | None = None  # translated speech starts playing for the listener

    @property
    def ear_voice_span(self) -> float | None:
        return None if self.placed is None else self.placed - self.first_word_end

    @property
    def reached(self) -> str:
        """The last milestone this clause got to ("segmented": cut into a clause, nothing after)."""
        return next((mark for mark, _ in reversed(MARKS) if getattr(self, mark) is not None), "segmented")

    def intervals(self) -> dict[str, float]:
        """Each stage's share in seconds (only between marks that exist); they add up to the ear-voice span."""
        out: dict[str, float] = {}
        previous = self.first_word_end
        for mark, label in MARKS:
            value = getattr(self, mark)
            if value is None:
                continue
            out[label] = value - previous
            previous = value
        return out

    def to_json(self) -> dict:
        return asdict(self) | {"ear_voice_span": self.ear_voice_span, "intervals": self.intervals()}


class WaterfallRecorder:
    """Fed every (stage name, frame) the pipeline emits, with the session time of the emission."""

    def __init__(self) -> None:
        self.clauses: dict[int, ClauseWaterfall] = {}

    def observe(self, stage: str, frame: object, now: float) -> None:
        if isinstance(frame, Clause):
            if frame.clause_id not in self.clauses:
                first = frame.words[0].end if frame.words else frame.pts
                self.clauses[frame.clause_id] = ClauseWaterfall(frame.clause_id, frame.text, first, frame.end, now)
            return
        if isinstance(frame, Translation):
            row = self.clauses.get(frame.source.clause_id)
            if row is not None and row.mt_done is None:
                row.mt_done = now
            return
        if isinstance(frame, SpeechChunk) and frame.first:
            row = self.clauses.get(frame.translation.source.clause_id)
            if row is None:
                return
            if stage == "tts" and row.tts_first is None:
                row.tts_first = now
            elif stage == "vc" and row.vc_first is None:
                row.vc_first = now

    def placed(self, clause_id: int, at: float) -> None:
        row = self.clauses.get(clause_id)
        if row is not None and row.placed is None:
            row.placed = at

    def rows(self) -> list[ClauseWaterfall]:
        return [self.clauses[k] for k in sorted(self.clauses)]


def stage_shares(rows: list[ClauseWaterfall]) -> dict[str, dict[str, float]]:
    """p50 / p95 of each stage's share over the clauses that reached it."""
    values: dict[str, list[float]] = {}
    for row in rows:
        for label, seconds in row.intervals().items():
            values.setdefault(label, []).append(seconds)
    return {
        label: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "n": len(v)}
        for label, v in values.items()
    }


def bars(row: ClauseWaterfall) -> list[dict[str, float | str]]:
    """The clause as waterfall bars in seconds after its first source word ended (for plots)."""
    out: list[dict[str, float | str]] = []
    previous = row.first_word_end
    for mark, label in MARKS:
        value = getattr(row, mark)
        if value is None:
            continue
        out.append({"stage": label, "start": previous - row.first_word_end, "end": value - row.first_word_end})
        previous = value
    return out
