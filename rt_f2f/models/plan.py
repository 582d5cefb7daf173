"""Which model each stage uses for a language here, what would serve it better, and what to pull when it cannot run.

One place answers "can rt-f2f speak Tamil on this machine, and with what?" for the three language-bound stages:

- ASR: the Whisper model asked for (``whisper-base`` is embedded); where base is weak (``WHISPER_SIZE_FOR``) the
  larger size to pull is named;
- MT: the first translator on this machine for the pair (the embedded en<->pt model, a pulled OPUS-MT pair, or a
  pulled NLLB-200), else the one to pull, with the larger NLLB named where it translates the language better;
- TTS: the voice ``rt_f2f.tts`` would choose (Piper, Kokoro, MMS-TTS, espeak-ng), else the voice to pull.

``rt-f2f models list`` prints the table, the speech commands check it before loading anything so a missing model
is one message naming every pull command, and the call page greys out languages this server cannot run.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .. import languages
from ..errors import ModelMissingError, RtF2fError
from .registry import NLLB_SIZE_FOR, REGISTRY, WHISPER_SIZE_FOR
from .store import get_store

PIVOT = "en"  # the per-language table shows translation to and from English


@dataclass(frozen=True)
class StageChoice:
    """One stage for one language (or pair): the model that runs here now, or what to pull."""

    stage: str  # "asr" | "mt" | "tts"
    language: str  # the language (for mt: "src->tgt")
    model: str | None  # what runs now; None: nothing here can
    pull: str | None = None  # a model to pull: needed when model is None, else an upgrade
    note: str = ""

    @property
    def ready(self) -> bool:
        return self.model is not None

    def describe(self) -> str:
        if self.model is None:
            missing = f"missing: rt-f2f models pull {self.pull}" if self.pull else "missing"
            return missing + (f" ({self.note})" if self.note else "")
        return self.model + (f" (better: pull {self.pull})" if self.pull else "")


def _here(name: str) -> bool:
    return get_store().status(name).where != "missing"


def asr_choice(language: str, model: str = "whisper-base") -> StageChoice:
    code = languages.validate(language)
    ready = model not in REGISTRY or _here(model)  # a folder path is checked when it loads
    suggested = WHISPER_SIZE_FOR.get(code)
    better = None
    if suggested and suggested != model and not _here(suggested):
        better = suggested
    note = f"Whisper base is weak in {languages.name(code)}" if suggested else ""
    return StageChoice("asr", code, model if ready else None, model if not ready else better, note)


def mt_choice(source: str, target: str) -> StageChoice:
    from ..mt.select import available_pairs

    source, target = languages.validate(source), languages.validate(target)
    pair = f"{source}->{target}"
    offers = [o for o in available_pairs() if (o.source, o.target) == (source, target)]
    ready = [o.model for o in offers if o.ready]
    upgrade = next((NLLB_SIZE_FOR[c] for c in (target, source) if c in NLLB_SIZE_FOR), None)
    if ready:
        better = upgrade if upgrade and upgrade not in ready and upgrade in REGISTRY else None
        return StageChoice("mt", pair, ready[0], better)
    pullable = [o.model for o in offers]
    if not pullable:
        return StageChoice("mt", pair, None, None, "no known model translates this pair")
    first = next((m for m in pullable if m != upgrade), pullable[0])  # registry order: single pairs, then NLLB
    note = f"{upgrade} translates it better" if upgrade and upgrade in pullable and upgrade != first else ""
    return StageChoice("mt", pair, None, first, note)


def tts_choice(language: str, backend: str | None = None) -> StageChoice:
    from ..tts.mms import mms_voice_name
    from ..tts.select import candidates

    code = languages.validate(language)
    found = candidates(code)
    if backend is not None:
        found = [b for b in found if b == backend]
    mms = mms_voice_name(code)
    if found:
        better = mms if found[0] == "espeak" and mms else None
        note = "espeak-ng is robotic" if better else ""
        return StageChoice("tts", code, found[0], better, note)
    piper = next((n for n, s in REGISTRY.items() if n.startswith("piper-") and code in s.languages), None)
    return StageChoice("tts", code, None, mms or piper, "install espeak-ng for a robotic voice meanwhile")


@dataclass(frozen=True)
class LanguagePlan:
    code: str
    name: str
    asr: StageChoice
    mt: StageChoice  # from English (to English for English itself, via the first other language that runs)
    tts: StageChoice

    @property
    def runnable(self) -> bool:
        return self.asr.ready and self.mt.ready and self.tts.ready

    def reason(self) -> str:
        """Why it cannot run here, with the pull commands; "" when it can."""
        parts = []
        for choice, what in ((self.asr, "speech recognition"), (self.mt, "translation"), (self.tts, "speech")):
            if not choice.ready:
                fix = f"run `rt-f2f models pull {choice.pull}`" if choice.pull else choice.note or "no model exists"
                parts.append(f"no {what} model for {choice.language} ({fix})")
        return "; ".join(parts)


def language_plan(code: str, asr_model: str = "whisper-base") -> LanguagePlan:
    code = languages.validate(code)
    other = "pt" if code == PIVOT else PIVOT
    mt = mt_choice(other, code) if code != PIVOT else mt_choice(PIVOT, other)
    return LanguagePlan(code, languages.name(code), asr_choice(code, asr_model), mt, tts_choice(code))


def all_plans() -> list[LanguagePlan]:
    return [language_plan(code) for code in languages.LANGUAGES]


@lru_cache(maxsize=1)
def language_status() -> dict[str, dict[str, str | bool]]:
    """Per language: can a call use it on this server, and if not, why (for the call page; computed once)."""
    return {p.code: {"name": p.name, "available": p.runnable, "reason": p.reason()} for p in all_plans()}


def require_models(
    source: str, target: str, asr_model: str = "whisper-base", mt_model: str | None = None, tts: str | None = None
) -> None:
    """Raise one ``ModelMissingError`` naming every pull command ``source`` -> ``target`` needs here, if any.

    Stages given an explicit model (``mt_model``, ``tts``) are left to their own loaders, which check them.
    """
    missing = []
    asr = asr_choice(source, asr_model)
    if not asr.ready:
        missing.append(f"{source} speech recognition: rt-f2f models pull {asr.pull}")
    if mt_model is None:
        mt = mt_choice(source, target)
        if not mt.ready:
            how = f"rt-f2f models pull {mt.pull}" if mt.pull else "pass --mt-model with a CTranslate2 folder"
            missing.append(f"{source}->{target} translation: {how}" + (f" ({mt.note})" if mt.note else ""))
    if tts is None:
        voice = tts_choice(target)
        if not voice.ready:
            missing.append(f"{target} speech: rt-f2f models pull {voice.pull}" if voice.pull else f"{target} speech")
    if missing:
        raise ModelMissingError(
            f"{source}->{target} cannot run on this machine yet: " + "; ".join(missing),
            "pull those on a machine with internet (the model cache can be copied), then run again",
        )


def print_table() -> None:
    """The per-language table under ``rt-f2f models list``."""
    rows = [("LANG", "ASR", "MT (from/to en)", "TTS")]
    try:
        plans = all_plans()
    except RtF2fError as exc:  # pragma: no cover - a broken install; the model table above still stands
        print(f"\nper-language models: unavailable ({exc.message})")
        return
    for p in plans:
        rows.append((f"{p.code} {p.name}", p.asr.describe(), p.mt.describe(), p.tts.describe()))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print("\nwhich model each stage uses, per language:")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
