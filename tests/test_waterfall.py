"""The per-clause latency waterfall: milestones from the frames the pipeline emits, shares that add up."""

from __future__ import annotations

import numpy as np
import pytest

from rt_f2f.frames import AudioChunk, Clause, SpeechChunk, Translation, Word
from rt_f2f.waterfall import WaterfallRecorder, bars, stage_shares


def clause(cid: int, start: float, end: float) -> Clause:
    return Clause("he was not", (Word(" he", start, start + 0.3), Word(" not", end - 0.3, end)), "en", cid)


def chunk(c: Clause, first: bool) -> SpeechChunk:
    return SpeechChunk(AudioChunk(np.zeros(10, np.float32), 24000, c.pts), Translation(c, "ele", "pt"), first, False)


def test_milestones_come_from_the_first_frame_of_each_stage_and_add_up_to_the_span() -> None:
    rec = WaterfallRecorder()
    a = clause(0, 0.0, 2.0)
    rec.observe("clauses", a, 3.0)
    rec.observe("mt", Translation(a, "ele", "pt"), 3.05)
    rec.observe("tts", chunk(a, first=True), 3.6)
    rec.observe("tts", chunk(a, first=False), 4.5)  # a later chunk moves nothing
    rec.observe("vc", chunk(a, first=True), 3.7)
    rec.observe("clauses", a, 9.0)  # a repeat of the same clause moves nothing
    rec.placed(0, 3.75)
    (row,) = rec.rows()
    assert row.first_word_end == pytest.approx(0.3) and row.source_end == 2.0
    shares = row.intervals()
    assert list(shares) == [
        "speaking (first word end -> clause end)",
        "ASR commit after speech end",
        "MT",
        "TTS first audio",
        "voice conversion",
        "placing (queue behind earlier speech)",
    ]
    assert shares["ASR commit after speech end"] == pytest.approx(1.0)
    assert shares["TTS first audio"] == pytest.approx(0.55)
    assert sum(shares.values()) == pytest.approx(row.ear_voice_span) == pytest.approx(3.45)
    drawn = bars(row)
    assert drawn[0]["start"] == 0.0 and drawn[-1]["end"] == pytest.approx(3.45)
    assert row.to_json()["ear_voice_span"] == pytest.approx(3.45)


def test_a_clause_that_never_played_has_no_span_and_shares_skip_missing_marks() -> None:
    rec = WaterfallRecorder()
    a, b = clause(0, 0.0, 1.0), clause(1, 2.0, 3.0)
    rec.observe("clauses", a, 2.0)
    rec.observe("clauses", b, 4.0)
    rec.observe("mt", Translation(b, "ele", "pt"), 4.5)
    rec.observe("tts", chunk(clause(7, 0.0, 1.0), first=True), 5.0)  # a clause it never saw: ignored
    rec.placed(1, 5.0)
    rows = rec.rows()
    assert rows[0].ear_voice_span is None and rows[1].ear_voice_span == pytest.approx(2.7)
    shares = stage_shares(rows)
    assert shares["ASR commit after speech end"]["n"] == 2
    assert shares["MT"]["n"] == 1
    assert shares["placing (queue behind earlier speech)"]["p50"] == pytest.approx(0.5)
