"""Standard simultaneous-translation latency metrics, on seconds rather than tokens.

Average Lagging (Ma et al., 2019, "STACL") and Length-Adaptive Average Lagging (Papi et al., 2022): for target
words y_1..y_|Y| emitted at delays d_i (seconds of source already elapsed when word i is heard), with a source of
duration |X| seconds,

    AL   = 1/tau * sum_{i=1..tau} [ d_i - (i - 1) * |X| / |Y| ]
    LAAL = the same with |X| / max(|Y|, |Y_ref|)

where tau is the index of the first target word emitted once the whole source has been heard (or |Y|). An ideal
simultaneous interpreter, speaking at the source's rate with zero lag, scores 0. LAAL does not reward a system for
saying less than the reference (over-short output makes the per-word "ideal" rate look slow, inflating AL's credit).
"""

from __future__ import annotations

from collections.abc import Sequence


def average_lagging(delays: Sequence[float], source_duration: float, reference_length: int | None = None) -> float:
    """AL, or LAAL when ``reference_length`` is given."""
    if not delays:
        raise ValueError("no target words: lagging is undefined")
    if source_duration <= 0:
        raise ValueError("source duration must be positive")
    length = len(delays) if reference_length is None else max(len(delays), reference_length)
    rate = source_duration / length
    tau = next((i + 1 for i, d in enumerate(delays) if d >= source_duration), len(delays))
    return sum(delays[i] - i * rate for i in range(tau)) / tau


def length_adaptive_average_lagging(delays: Sequence[float], source_duration: float, reference_length: int) -> float:
    return average_lagging(delays, source_duration, reference_length)


def translation_quality(hypothesis: str, reference: str) -> dict[str, float]:
    """Sentence-level BLEU and chrF of one output against one reference (sacrebleu's standard settings)."""
    import sacrebleu

    return {
        "bleu": sacrebleu.sentence_bleu(hypothesis, [reference]).score,
        "chrf": sacrebleu.sentence_chrf(hypothesis, [reference]).score,
    }
