"""JSON from strangers: size and nesting bounded before parsing, strings checked after.

Python's ``json`` recurses once per nesting level, so ``[`` x 1500 raises ``RecursionError`` (not ``ValueError``)
and a deep document costs stack and time before anything can look at it. It also accepts ``NaN``/``Infinity`` and
lone UTF-16 surrogates (``"\\ud800"``), which later fail wherever the text is encoded (comparing a token, sending
a name on). Every JSON document the server receives, over HTTP or on the data channel, goes through ``loads``
here, so each of those is refused in one place with one reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

DEFAULT_MAX_DEPTH = 16  # the deepest document the API defines is 2 levels; leave room for clients' extras

# A JSON string (with its escapes) or one bracket: strings are skipped so brackets inside them do not count.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class JsonRefused(ValueError):
    """The text is not JSON this server accepts; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class JsonBounds:
    max_bytes: int
    max_depth: int = DEFAULT_MAX_DEPTH


def nesting_depth(text: str, stop_above: int) -> int:
    """The deepest bracket nesting in ``text`` (strings ignored); stops counting once past ``stop_above``."""
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_above:
                    return deepest
        elif token in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> float:
    raise JsonRefused(f"{name} is not JSON")


def _check_strings(value: object, depth: int = 0) -> None:
    """Refuse lone surrogates anywhere (keys and values); depth is already bounded, so this recursion is too."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise JsonRefused("a string holds a lone UTF-16 surrogate") from exc
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, depth + 1)
            _check_strings(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item, depth + 1)


def loads(data: str | bytes, bounds: JsonBounds) -> object:
    """Parse ``data`` as JSON within ``bounds``; raises ``JsonRefused`` (a ``ValueError``) for anything else."""
    if len(data) > bounds.max_bytes:
        raise JsonRefused(f"larger than {bounds.max_bytes} bytes")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonRefused("not UTF-8 text") from exc
    else:
        text = data
    if len(text.encode("utf-8", "surrogatepass")) > bounds.max_bytes:
        raise JsonRefused(f"larger than {bounds.max_bytes} bytes")
    if nesting_depth(text, bounds.max_depth) > bounds.max_depth:
        raise JsonRefused(f"nested deeper than {bounds.max_depth} levels")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except JsonRefused:
        raise
    except (ValueError, RecursionError) as exc:  # RecursionError: belt and braces, depth is checked above
        raise JsonRefused("not valid JSON") from exc
    _check_strings(value)
    return value
