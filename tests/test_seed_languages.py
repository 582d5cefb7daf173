"""The six languages of the seed paper (Hindi, English, Telugu, Malayalam, Tamil, Urdu) through the chain.

With the models that install here: espeak-ng voices, a tiny NLLB-format CTranslate2 model trained (seconds) only to
write each language in its script, and tiny random MMS-TTS voices. Checks language codes and scripts, never quality.
"""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from mms_tiny import build_tiny_mms
from mt_tiny import SEED_SCRIPT_LETTERS, build_tiny_seed_nllb

from rt_f2f import languages
from rt_f2f.errors import ModelMissingError
from rt_f2f.models.plan import language_plan, language_status, require_models
from rt_f2f.mt.ct2 import NLLB_CODES, CT2Translator

SEED = ("hi", "en", "te", "ml", "ta", "ur")
REPO = Path(__file__).resolve().parents[1]
SAMPLE_TEXT = {
    "en": "the cat sees my house today",
    "hi": "मेरा नाम राम है",
    "te": "నా పేరు రాము",
    "ml": "എന്റെ പേര് രാമൻ",
    "ta": "என் பெயர் ராமன்",
    "ur": "میرا نام رام ہے",
}
NLLB_SCRIPT = {"Latn": "Latin", "Deva": "Devanagari", "Telu": "Telugu", "Mlym": "Malayalam", "Taml": "Tamil"}
NLLB_SCRIPT["Arab"] = "Arabic"


def scripts_of(text: str) -> set[str]:
    """The Unicode scripts of the letters in ``text`` (from their character names: 'DEVANAGARI LETTER KA'...)."""
    found = set()
    for ch in text:
        if ch.isalpha():
            word = unicodedata.name(ch, "UNKNOWN").split()[0]
            found.add({"LATIN": "Latin", "ARABIC": "Arabic"}.get(word, word.title()))
    return found


@pytest.fixture(scope="module")
def seed_nllb(tmp_path_factory) -> Path:
    return build_tiny_seed_nllb(tmp_path_factory.mktemp("nllb") / "nllb-seed")


def test_the_table_knows_the_six_with_their_scripts_and_nllb_codes():
    for code in SEED:
        assert languages.validate(code.upper()) == code
        assert scripts_of(SAMPLE_TEXT[code]) == {languages.SCRIPTS[code]}
        assert NLLB_SCRIPT[NLLB_CODES[code].split("_")[1]] == languages.SCRIPTS[code]
    assert [languages.name(c) for c in ("te", "ml", "ta", "ur")] == ["Telugu", "Malayalam", "Tamil", "Urdu"]


def test_nllb_format_model_writes_every_seed_target_in_its_script(seed_nllb):
    for source in SEED:
        for target in SEED:
            if source == target:
                continue
            translator = CT2Translator(seed_nllb, source, target)
            assert translator._source_specials == [NLLB_CODES[source]]
            assert translator._target_prefix == [NLLB_CODES[target]]
            (out,) = translator.translate([SAMPLE_TEXT[source]])
            assert out and scripts_of(out) == {languages.SCRIPTS[target]}, (source, target, out)
            translator.close()


@pytest.mark.parametrize("code", SEED)
def test_espeak_speaks_each_seed_language(code):
    from rt_f2f.tts import get_synthesizer

    synth = get_synthesizer(code, backend="espeak")
    audio = synth.synthesize(SAMPLE_TEXT[code], code)
    assert audio.size > 0.3 * synth.sample_rate and np.sqrt(np.mean(audio**2)) > 0.01


def test_mms_voices_load_from_the_store_and_read_their_script(tmp_path, monkeypatch):
    from rt_f2f.models.registry import REGISTRY
    from rt_f2f.tts import candidates, get_synthesizer
    from rt_f2f.tts.mms import MmsSynthesizer

    for code, iso3 in (("te", "tel"), ("ml", "mal"), ("ta", "tam"), ("ur", "urd")):
        letters = SEED_SCRIPT_LETTERS[next(k for k in NLLB_CODES.values() if k.startswith(iso3))]
        folder = build_tiny_mms(tmp_path / iso3, iso3, letters + SAMPLE_TEXT[code])
        assert "mms" not in candidates(code)  # not pulled: espeak-ng speaks it meanwhile
        assert language_plan(code).tts.describe() == f"espeak (better: pull mms-tts-{iso3})"
        monkeypatch.setenv(REGISTRY[f"mms-tts-{iso3}"].env_var, str(folder))
        assert candidates(code)[0] == "mms"
        synth = get_synthesizer(code)
        assert isinstance(synth, MmsSynthesizer) and synth.sample_rate == 16000
        audio = synth.synthesize(SAMPLE_TEXT[code], code)
        assert audio.size > 0 and np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
        assert np.array_equal(audio, synth.synthesize(SAMPLE_TEXT[code], code))  # the same phrase, the same audio
        assert synth.synthesize("abc xyz", code).size == 0  # letters it has no symbols for: silent (and logged)


def test_a_folder_that_is_not_an_mms_voice_is_refused(tmp_path):
    from rt_f2f.errors import ModelFormatError
    from rt_f2f.tts.mms import MmsSynthesizer

    (tmp_path / "x").mkdir()
    with pytest.raises(ModelFormatError, match="lacks config.json"):
        MmsSynthesizer(tmp_path / "x", "te")
    for name in ("config.json", "vocab.json", "tokenizer_config.json", "model.safetensors"):
        (tmp_path / "x" / name).write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelFormatError, match="'bert' model, not a VITS"):
        MmsSynthesizer(tmp_path / "x", "te")


def test_without_nllb_one_message_names_what_to_pull(monkeypatch, tmp_path):
    monkeypatch.setenv("RT_F2F_HOME", str(tmp_path))  # an empty model cache
    with pytest.raises(ModelMissingError) as err:
        require_models("en", "ta")
    message = err.value.message
    assert "en->ta translation: rt-f2f models pull nllb-200-600m-int8" in message
    assert "nllb-200-1.3b-int8 translates it better" in message
    require_models("en", "pt")  # the embedded models serve it: nothing to pull
    plan = language_plan("te")
    assert plan.asr.describe() == "whisper-base (better: pull whisper-large-v3)"
    assert not plan.runnable and "rt-f2f models pull nllb-200-600m-int8" in plan.reason()


def test_speech_command_without_a_model_fails_in_one_line_before_loading(tmp_path):
    import os

    clip = REPO / "examples" / "en_sample.wav"
    env = {**os.environ, "RT_F2F_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "rt_f2f", "speech", str(clip), "--source", "en", "--target", "ta"]
        + ["--out", str(tmp_path / "o.wav")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("rt-f2f: error")]
    assert len(errors) == 1 and "rt-f2f models pull nllb-200-600m-int8" in errors[0]
    assert not (tmp_path / "o.wav").exists()


def test_call_page_status_offers_only_languages_that_run():
    status = language_status()
    assert status["en"]["available"] and status["pt"]["available"]  # embedded models
    for code in ("te", "ml", "ta", "ur"):
        if not status[code]["available"]:
            assert "rt-f2f models pull" in status[code]["reason"]
    js = (REPO / "web" / "app.js").read_text()
    assert "language_status" in js and "disabled" in js


@pytest.mark.slow
@pytest.mark.parametrize(("source", "target"), [("en", "hi"), ("hi", "en"), ("en", "ta")])
def test_speech_command_runs_the_seed_pairs_with_an_nllb_folder(seed_nllb, source, target, tmp_path, capsys):
    from rt_f2f.audio import read_audio, write_wav
    from rt_f2f.cli import main

    if source == "en":
        clip = write_wav(tmp_path / "in.wav", read_audio(REPO / "examples" / "en_sample.wav", 16000)[:48000], 16000)
    else:
        from rt_f2f.tts import get_synthesizer

        synth = get_synthesizer("hi", backend="kokoro")
        speech = synth.synthesize("मेरा नाम राम है। मैं दिल्ली में रहता हूँ।", "hi")
        from rt_f2f.audio import resample

        clip = write_wav(tmp_path / "in.wav", resample(speech, synth.sample_rate, 16000), 16000)
    out, report = tmp_path / "out.wav", tmp_path / "r.json"
    argv = ["speech", str(clip), "--source", source, "--target", target, "--out", str(out), "--report", str(report)]
    rc = main(argv + ["--mt-model", str(seed_nllb), "--no-voice-conversion"])
    assert rc == 0, capsys.readouterr().err
    data = json.loads(report.read_text())
    assert data["source"] == source and data["target"] == target
    assert data["translation"] and scripts_of(data["translation"]) == {languages.SCRIPTS[target]}
    assert read_audio(out, 16000).size > 0
    print(f"{source}->{target}: heard {data['transcript']!r}; said {data['translation']!r}")


@pytest.mark.slow
def test_real_hindi_round_trip_kokoro_to_whisper_base(whisper_base):
    """Kokoro speaks Hindi, Whisper base (weak in Hindi) transcribes it: reported, not judged."""
    from rt_f2f.audio import resample
    from rt_f2f.tts import get_synthesizer

    text = "मेरा नाम राम है। मैं दिल्ली में रहता हूँ।"
    synth = get_synthesizer("hi", backend="kokoro")
    audio = resample(synth.synthesize(text, "hi"), synth.sample_rate, 16000)
    heard = " ".join(w.text for w in whisper_base.transcribe(audio, language="hi").words).strip()
    print(f"Kokoro said {text!r}; Whisper base heard {heard!r} (scripts {sorted(scripts_of(heard))})")
    assert heard  # it heard something; what, is reported above
