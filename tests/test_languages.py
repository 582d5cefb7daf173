"""Language codes: the one check every stage runs on user input."""

from __future__ import annotations

import pytest

from rt_f2f.errors import LanguageError
from rt_f2f.languages import LANGUAGES, name, validate


@pytest.mark.parametrize("code", sorted(LANGUAGES))
def test_every_known_code_is_canonical(code: str) -> None:
    assert len(code) == 2 and code.islower()
    assert validate(code) == code


@pytest.mark.parametrize(("given", "expected"), [("PT", "pt"), ("pt-BR", "pt"), ("pt_BR", "pt"), (" en ", "en")])
def test_case_and_region_subtags_are_forgiven(given: str, expected: str) -> None:
    assert validate(given) == expected


@pytest.mark.parametrize("bad", ["xx", "", "portuguese", "por", "-pt", "e"])
def test_unknown_codes_raise_with_the_list_of_codes(bad: str) -> None:
    with pytest.raises(LanguageError) as info:
        validate(bad)
    message = str(info.value)
    assert repr(bad) in message or f"'{bad}'" in message
    for code in ("en", "pt", "de", "zh"):
        assert code in info.value.message
    assert info.value.hint


def test_non_string_raises_language_error() -> None:
    with pytest.raises(LanguageError):
        validate(None)  # type: ignore[arg-type]


def test_name() -> None:
    assert name("pt-BR") == "Portuguese"
    assert name("en") == "English"
    with pytest.raises(LanguageError):
        name("xx")
