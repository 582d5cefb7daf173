"""Speech recognition: the ``Recogniser`` contract (``base``), the Whisper backend (``whisper``), the streaming
commit policies (``policy``), the pipeline stage binding the two (``stage``) and a live replay (``replay``).

``policy`` does not import Whisper: its policies take any ``transcribe(audio, offset, prompt)`` callable. The word
error rate lives here because tests and benchmarks of both need it.
"""

from __future__ import annotations

import re

_SPLIT = re.compile(r"[^\w']+")


def wer_words(text: str) -> list[str]:
    """Words as WER counts them: lower case, split at spaces, hyphens and punctuation ("ill-disposed." -> 2)."""
    return [w.strip("'") for w in _SPLIT.split(text.lower()) if w.strip("'")]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by Levenshtein distance over words."""
    ref, hyp = wer_words(reference), wer_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / len(ref)
