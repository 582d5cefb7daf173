"""Apertium (Debian packages ``apertium`` + ``apertium-eng-spa`` / ``apertium-eng-cat`` ...) as a last-resort backend.

Rule-based shallow transfer: far weaker than OPUS-MT or NLLB, but the only way to get en->es or en->ca from a
package registry on a machine without a model hub. ``get_translator`` falls back to it only when no neural
model covers the pair, so a pulled model always wins. Unknown words are passed through unmarked (``-u``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import BackendUnavailableError, MediaError
from .base import Translator, bound_text

MODES_DIR = Path("/usr/share/apertium/modes")
# ISO 639-1 -> the three-letter codes Apertium's newer pair packages name their modes with
ISO3 = {"en": "eng", "es": "spa", "ca": "cat", "gl": "glg", "eu": "eus", "fr": "fra", "pt": "por", "it": "ita"}
TIMEOUT_S = 20.0


def mode_for(source: str, target: str, modes_dir: Path = MODES_DIR) -> str | None:
    """The installed Apertium mode for the pair (``eng-spa`` or the older ``en-es``), or None."""
    if shutil.which("apertium") is None:
        return None
    for name in (f"{ISO3.get(source, source)}-{ISO3.get(target, target)}", f"{source}-{target}"):
        if (modes_dir / f"{name}.mode").is_file():
            return name
    return None


class ApertiumTranslator(Translator):
    description = "apertium (rule-based, Debian)"

    def __init__(self, source: str, target: str) -> None:
        mode = mode_for(source, target)
        if mode is None:
            raise BackendUnavailableError(
                f"no Apertium pair for {source}->{target} is installed",
                f"install it (Debian: apertium-{ISO3.get(source, source)}-{ISO3.get(target, target)})",
            )
        self.source, self.target, self.mode = source, target, mode

    def translate(self, texts: list[str]) -> list[str]:
        out = []
        for text in texts:
            text = bound_text(text).replace("\n", " ")
            out.append(self._one(text) if text else "")
        return out

    def _one(self, text: str) -> str:
        result = subprocess.run(["apertium", "-u", self.mode], input=text, capture_output=True, text=True,
                                timeout=TIMEOUT_S)  # fmt: skip
        if result.returncode != 0:
            raise MediaError(f"apertium {self.mode} failed: {result.stderr.strip()[:200]}", "check the pair package")
        return " ".join(result.stdout.split())
