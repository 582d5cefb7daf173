"""Clause segmentation: where it cuts, and that every committed word goes out in exactly one clause."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rt_f2f.clauses import ClauseConfig, ClauseSegmenter, ClauseStage
from rt_f2f.errors import RtF2fError
from rt_f2f.frames import Clause, ControlEvent, ControlKind, Transcript, Word
from rt_f2f.stage import LatencyLog, Pipeline


def words(text: str, start: float = 0.0, step: float = 0.3, gaps: dict[int, float] | None = None) -> list[Word]:
    """Whisper-style words (leading spaces), back to back, with optional extra silence before word i."""
    out, t = [], start
    for i, token in enumerate(text.split()):
        t += (gaps or {}).get(i, 0.0)
        out.append(Word(" " + token, round(t, 3), round(t + step, 3)))
        t += step
    return out


def texts(clauses: list[Clause]) -> list[str]:
    return [c.text for c in clauses]


def test_cuts_at_sentence_and_clause_punctuation() -> None:
    seg = ClauseSegmenter()
    out = seg.push(words("Hello there. How are you? Fine; thanks: really!"), "en") + seg.flush()
    assert texts(out) == ["Hello there.", "How are you?", "Fine;", "thanks:", "really!"]
    assert [c.clause_id for c in out] == [0, 1, 2, 3, 4]
    assert all(c.language == "en" for c in out)


def test_a_comma_cuts_only_after_enough_words() -> None:
    seg = ClauseSegmenter(ClauseConfig(comma_min_words=4))
    out = seg.push(words("Well, I think that we should, in the end, go home"), "en") + seg.flush()
    assert texts(out) == ["Well, I think that we should,", "in the end, go home"]


def test_titles_are_not_sentence_ends() -> None:
    seg = ClauseSegmenter(ClauseConfig.sentences())
    out = seg.push(words("And Mr. John Dashwood had then leisure."), "en")
    assert texts(out) == ["And Mr. John Dashwood had then leisure."]


def test_a_pause_cuts_and_the_clause_keeps_its_times() -> None:
    seg = ClauseSegmenter(ClauseConfig(pause_s=0.5))
    ws = words("he was not an ill disposed young man", gaps={4: 0.6})
    out = seg.push(ws, "en")
    assert texts(out) == ["he was not an"]
    assert out[0].pts == ws[0].start and out[0].end == ws[3].end
    assert seg.pending == tuple(ws[4:])
    assert texts(seg.flush()) == ["ill disposed young man"]
    assert seg.flush() == []


def test_max_words_caps_a_clause() -> None:
    seg = ClauseSegmenter(ClauseConfig(max_words=3))
    out = seg.push(words("one two three four five six seven"), "en") + seg.flush()
    assert texts(out) == ["one two three", "four five six", "seven"]


def test_a_cap_moves_back_to_the_word_that_starts_a_phrase() -> None:
    seg = ClauseSegmenter()  # the live default: phrases of at most 6 words
    ws = words("unless to be rather cold-hearted and rather selfish is to be ill-disposed.")
    out = seg.push(ws, "en") + seg.flush()
    assert texts(out) == ["unless to be rather cold-hearted", "and rather selfish", "is to be ill-disposed."]
    assert [c.words for c in out] == [tuple(ws[:5]), tuple(ws[5:8]), tuple(ws[8:])]


def test_a_cap_without_a_phrase_start_cuts_at_the_cap_and_never_below_min_words() -> None:
    seg = ClauseSegmenter(ClauseConfig(max_words=4, min_words=3))
    # "and" would leave one word behind (below min_words): the cap cuts where it is
    out = seg.push(words("one and three four five six seven eight"), "en") + seg.flush()
    assert texts(out) == ["one and three four", "five six seven eight"]
    # a language without a phrase list cuts at the cap
    seg = ClauseSegmenter(ClauseConfig(max_words=3))
    out = seg.push(words("un and deux trois quatre"), "xx") + seg.flush()
    assert texts(out) == ["un and deux", "trois quatre"]


def test_the_sentence_policy_keeps_whole_clauses() -> None:
    seg = ClauseSegmenter(ClauseConfig.sentences())
    ws = words("unless to be rather cold-hearted and rather selfish is to be ill-disposed.")
    assert texts(seg.push(ws, "en")) == ["unless to be rather cold-hearted and rather selfish is to be ill-disposed."]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(RtF2fError):
        ClauseConfig(max_words=0)
    with pytest.raises(RtF2fError):
        ClauseConfig(pause_s=0)


_token = st.text(alphabet="abcdefghij", min_size=1, max_size=6)
_punct = st.sampled_from(["", "", "", ",", ".", "?", ";", ":", "!"])


@settings(max_examples=200, deadline=None)
@given(
    spec=st.lists(st.tuples(_token, _punct, st.floats(0.0, 1.2), st.floats(0.05, 0.6)), max_size=60),
    batches=st.lists(st.integers(1, 7), min_size=1, max_size=20),
    max_words=st.integers(1, 15),
)
def test_every_word_goes_out_once_in_order(spec, batches, max_words: int) -> None:
    t, ws = 0.0, []
    for token, punct, gap, length in spec:
        t += gap
        ws.append(Word(f" {token}{punct}", t, t + length))
        t += length
    seg = ClauseSegmenter(ClauseConfig(max_words=max_words))
    out, i, b = [], 0, 0
    while i < len(ws):  # pushed in uneven batches, as commits arrive
        n = batches[b % len(batches)]
        out += seg.push(ws[i : i + n], "en")
        i, b = i + n, b + 1
    out += seg.flush()
    assert [w for c in out for w in c.words] == ws
    assert all(0 < len(c.words) <= max_words for c in out)
    assert [c.clause_id for c in out] == list(range(len(out)))


def _transcripts(segment_id: int, ws: list[Word], steps: list[int]) -> list[Transcript]:
    """Growing transcripts of one segment: each repeats all words committed so far; the last is final."""
    out = [Transcript(tuple(ws[:n]), tuple(ws[n : n + 2]), "en", segment_id) for n in steps]
    return out + [Transcript(tuple(ws), (), "en", segment_id, final=True)]


async def test_clause_stage_takes_each_committed_word_once() -> None:
    first = words("And Mr. John Dashwood had then leisure, to consider how much there might be", step=0.25)
    second = words("he was not an ill disposed young man", start=10.0)
    items = [
        *_transcripts(0, first, [2, 2, 5, 9, 9, 13]),
        Transcript(tuple(first), (), "en", 0, final=True),  # a late repeat of a finished segment
        *_transcripts(1, second, [3, 6])[:-1],  # segment 1 never sends its final transcript...
        ControlEvent(ControlKind.END_OF_SPEECH, 12.5),  # ...but the end of speech flushes it
    ]

    async def source():
        for item in items:
            yield item

    log = LatencyLog()
    out = [x async for x in Pipeline([ClauseStage(ClauseConfig.sentences())], log=log).run(source())]
    clauses = [c for c in out if isinstance(c, Clause)]
    assert [w for c in clauses for w in c.words] == first + second[:6]
    assert texts(clauses)[:2] == ["And Mr. John Dashwood had then leisure,", "to consider how much there might be"]
    assert isinstance(out[-1], ControlEvent)
    assert len(log.for_stage("clauses")) == len(clauses)


async def test_clause_stage_flushes_when_a_new_segment_starts_without_a_final() -> None:
    a, b = words("one two three"), words("four five", start=5.0)
    stage = ClauseStage()
    out = []
    for item in [Transcript(tuple(a), (), "en", 0), Transcript(tuple(b), (), "en", 1, final=True)]:
        out += [c async for c in stage.process(item)]
    assert texts(out) == ["one two three", "four five"]
