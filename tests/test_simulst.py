"""Average Lagging / LAAL against hand-worked cases, and the quality metrics."""

from __future__ import annotations

import pytest

from benchmarks.simulst import average_lagging, length_adaptive_average_lagging, translation_quality


def test_wait_k_lags_by_k() -> None:
    # source of 10 units, one target word per unit, wait-3: word i emitted after i + 2 units are read
    delays = [min(3 + i, 10) for i in range(10)]
    assert average_lagging(delays, 10.0) == pytest.approx(3.0)


def test_an_ideal_interpreter_lags_zero_and_a_consecutive_one_lags_the_whole_source() -> None:
    assert average_lagging([0.0, 1.0, 2.0, 3.0], 4.0) == pytest.approx(0.0)
    assert average_lagging([4.0, 4.5, 5.0], 4.0) == pytest.approx(4.0)  # tau = 1: only the first word counts


def test_laal_does_not_reward_saying_less() -> None:
    short = [1.0, 2.0]  # two words for a reference of four
    # AL's ideal rate is 2 s/word, so the second word looks on time: ((1 - 0) + (2 - 2)) / 2
    assert average_lagging(short, 4.0) == pytest.approx(0.5)
    # LAAL keeps the reference's 1 s/word: ((1 - 0) + (2 - 1)) / 2
    assert length_adaptive_average_lagging(short, 4.0, reference_length=4) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        average_lagging([], 4.0)


def test_quality_scores() -> None:
    same = translation_quality("ele não era um jovem", "ele não era um jovem")
    assert same["bleu"] == pytest.approx(100.0) and same["chrf"] == pytest.approx(100.0)
    worse = translation_quality("ela era uma casa", "ele não era um jovem")
    assert worse["bleu"] < 50 and worse["chrf"] < same["chrf"]
