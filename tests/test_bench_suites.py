"""The benchmark suites behind ``rt-f2f bench``: a cheap subset through the CLI, the pieces of the heavier suites
that turn engine logs into figures, and (slow) the speech-side suites end to end.

The full ``--quick`` run is tests/test_bench.py's slow test; nothing here asserts a speed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rt_f2f.bench import validate
from rt_f2f.cli import main
from rt_f2f.stage import LatencyLog, LatencyRecord


def _results(out: Path) -> dict:
    report = json.loads((out / "results.json").read_text())
    assert validate(report) == []
    return report


def test_cheap_suites_run_through_the_cli(tmp_path: Path) -> None:
    assert main(["bench", "--quick", "--suite", "mt", "scheduler", "--out", str(tmp_path)]) == 0
    report = _results(tmp_path)
    assert [s["suite"] for s in report["suites"]] == ["mt", "scheduler"]
    assert report["settings"] == {"quick": True, "device": "cpu", "suites": ["mt", "scheduler"]}
    for suite in report["suites"]:
        assert suite["status"] == "ok", suite["reason"]
        assert suite["figures"] and all(f["n"] >= 1 and math.isfinite(f["value"]) for f in suite["figures"])
    assert {p.name for p in tmp_path.glob("*.png")} >= {"latency_cdf.png", "output_delay.png"}
    md = (tmp_path / "report.md").read_text()
    assert "## mt (ok" in md and "## scheduler (ok" in md and "![output_delay](output_delay.png)" in md


def test_webrtc_suite_says_why_it_cannot_run(monkeypatch) -> None:
    import importlib.util

    from benchmarks import suite_webrtc

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "rt_f2f.server" else real(name, *a)
    )
    result = suite_webrtc.SUITE.run(suite_webrtc.BenchContext(quick=True))
    assert result.status == "skipped" and "rt_f2f/server" in result.reason and not result.figures


def _record(stage: str, media_in: float, media_out: float, wall_in: float, wall_out: float) -> LatencyRecord:
    return LatencyRecord(stage, media_in, media_out, wall_in, wall_out)


def test_pipeline_bottleneck_costs_are_per_clause() -> None:
    from benchmarks.suite_pipeline import FPS, _clause_costs
    from rt_f2f.frames import Caption

    captions = [
        Caption("Ele não era um jovem mal-disposto,", "pt", 0.1, 2.7, True, "translation"),
        Caption("he was not an ill disposed young man,", "en", 0.1, 2.7, True, "source"),
        Caption("a menos que", "pt", 3.1, 5.9, True, "translation"),  # placed or dropped: counted the same
    ]
    result = SimpleNamespace(captions=captions)
    log = LatencyLog()
    for rec in (
        _record("asr", 1.0, 1.2, 0.0, 0.5),
        _record("asr", 2.0, 2.7, 1.0, 1.75),  # both commit clause 0's words
        _record("asr", 4.0, 5.9, 2.0, 4.0),  # clause 1's
        _record("mt", 0.1, 0.1, 2.0, 2.1),
        _record("mt", 3.1, 3.1, 4.0, 4.05),
        _record("tts", 0.1, 0.1, 2.1, 2.5),  # clause 0: two chunks, cumulative from the clause's wall_in
        _record("tts", 0.1, 1.2, 2.1, 3.1),
        _record("vc:passthrough", 0.1, 0.1, 2.5, 2.5),
        _record("vc:passthrough", 1.2, 1.2, 3.1, 3.1),
        _record("tts", 3.1, 3.1, 4.05, 4.25),  # clause 1: one chunk
        _record("vc", 3.1, 3.1, 4.25, 4.55),
    ):
        log.add(rec)
    costs = _clause_costs(result, log, generator_s_per_frame=0.04)
    assert costs[0] == pytest.approx({"asr": 1.25, "mt": 0.1, "tts": 1.0, "vc": 0.0, "lipsync": 2.6 * FPS * 0.04})
    assert costs[1] == pytest.approx({"asr": 2.0, "mt": 0.05, "tts": 0.2, "vc": 0.3, "lipsync": 2.8 * FPS * 0.04})
    assert [max(c, key=c.get) for c in costs] == ["lipsync", "lipsync"]
    no_lipsync = _clause_costs(result, log, generator_s_per_frame=None)
    assert [max(c, key=c.get) for c in no_lipsync] == ["asr", "asr"] and "lipsync" not in no_lipsync[0]


def test_pipeline_clip_is_a_talking_video(tmp_path: Path) -> None:
    from benchmarks.suite_pipeline import FPS, build_clip
    from rt_f2f.video import probe_video

    pytest.importorskip("skimage", reason="the clip's face photo comes from scikit-image")
    info = probe_video(build_clip(tmp_path, 1.0))
    assert info.has_audio and not info.is_image
    assert info.fps == pytest.approx(FPS) and info.frame_count == int(FPS)
    assert (info.width, info.height) == (256, 256)


@pytest.mark.slow
def test_speech_side_suites_report_their_comparisons(tmp_path: Path) -> None:
    assert main(["bench", "--quick", "--suite", "tts", "voice", "speech", "--out", str(tmp_path)]) == 0
    report = _results(tmp_path)
    suites = {s["suite"]: s for s in report["suites"]}
    for name in ("tts", "voice", "speech"):
        assert suites[name]["status"] == "ok", suites[name]["reason"]
    names = {name: {f["name"] for f in s["figures"]} for name, s in suites.items()}
    assert {
        "piper (en) baseline / streamed time to first audio (p50)",
        "kokoro (pt) baseline / streamed time to first audio (p50)",
        "piper (en) real-time factor",
    } <= names["tts"]
    assert {"speaker similarity, converted", "similarity gained by conversion"} <= names["voice"]
    assert {"ear-voice span (rt-f2f, live) p50", "baseline / rt-f2f ear-voice span, first clause",
            "asr real-time factor", "tts compute p50"} <= names["speech"]  # fmt: skip
    figures = {f["name"]: f for f in suites["voice"]["figures"]}
    assert figures["speaker similarity, converted"]["n"] == 2 * 3  # 2 sentences x 3 held-out clips
    assert {"ear-voice span (today's engine, live) p50", "today's engine / rt-f2f ear-voice span p50"} <= names[
        "speech"
    ]
    bars = suites["speech"]["series"]["waterfall"]
    assert [b["stage"] for b in bars][0] == "speaking (first word end -> clause end)" and "MT" in {
        b["stage"] for b in bars
    }
    assert all(b["end"] >= b["start"] for b in bars)
    assert suites["speech"]["series"]["cdf:speech ear-voice span (live)"]
    assert set(suites["speech"]["series"]["clause_waterfall"]) == {"rt-f2f", "today's engine"}
    assert (tmp_path / "waterfall_speech.png").stat().st_size > 1000
    assert (tmp_path / "clause_waterfall_speech.png").stat().st_size > 1000


def test_browser_bench_finds_each_sentence_onset_and_lays_out_the_microphone_file(tmp_path) -> None:
    from benchmarks.bench_webrtc_browser import LEAD_IN_S, MIC_RATE, Levels, speaker_wav
    from rt_f2f.audio import read_audio

    t = np.arange(0, 20, 0.02) + 1.7e9  # wall-clock frame times
    rms = np.zeros(t.size)
    rms[(t - t[0] > 3.0) & (t - t[0] < 4.5)] = 0.1  # a sentence with a short pause inside it
    rms[(t - t[0] > 4.7) & (t - t[0] < 6.0)] = 0.1
    rms[(t - t[0] > 12.0) & (t - t[0] < 13.0)] = 0.1  # the next one
    onsets = Levels(t, rms).onsets(quiet_s=0.5) - t[0]
    assert onsets == pytest.approx([3.0, 12.0], abs=0.021)

    tone = np.sin(np.arange(8000) / 16000 * 2 * np.pi * 200).astype(np.float32) * 0.5
    starts = speaker_wav(tmp_path / "mic.wav", [tone, tone], 16000, gap_s=2.0)
    assert starts == pytest.approx([LEAD_IN_S, LEAD_IN_S + 0.5 + 2.0])
    mic = read_audio(tmp_path / "mic.wav", MIC_RATE)
    frames = Levels.of(mic, MIC_RATE)
    assert frames.onsets() == pytest.approx(starts, abs=0.021)


def test_loopback_ice_is_undone_after_the_bench() -> None:
    """The browser bench runs inside test sessions too: ICE must gather real addresses again afterwards."""
    import aioice.ice

    from benchmarks.bench_webrtc import loopback_ice

    original = aioice.ice.get_host_addresses
    with loopback_ice():
        assert aioice.ice.get_host_addresses() == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses is original
    with pytest.raises(RuntimeError), loopback_ice():
        raise RuntimeError("a failed run")
    assert aioice.ice.get_host_addresses is original


def test_ab_speech_variants_set_speech_and_clause_fields() -> None:
    from benchmarks.ab_speech import apply_settings, parse_setting
    from rt_f2f.speech import SpeechConfig

    base = SpeechConfig(source="en", target="pt")
    settings = dict(parse_setting(part) for part in "clauses.max_words=4,asr_step_s=0.75,tts_priority=off".split(","))
    assert settings == {"clauses.max_words": 4, "asr_step_s": 0.75, "tts_priority": False}
    config = apply_settings(base, settings)
    assert (config.clauses.max_words, config.asr_step_s, config.tts_priority) == (4, 0.75, False)
    assert config.clauses.comma_min_words == base.clauses.comma_min_words  # the rest of the ClauseConfig is kept
    assert apply_settings(base, {"asr_margin_s": 0.5}).clauses == base.clauses
    for bad in ("clauses.nope=1", "nope=1", "asr_step_s=", "voices.max_words=3"):
        with pytest.raises(SystemExit, match="NAME=VALUE"):
            parse_setting(bad)


def test_ab_speech_variants_naming_other_models_get_their_own() -> None:
    """A variant that names another voice is measured with that voice: models are shared only between variants
    whose model settings agree (once a tts_backend variant silently ran with the defaults' Kokoro)."""
    from benchmarks.ab_speech import VariantModels, apply_settings
    from rt_f2f.speech import SpeechConfig

    loads: list[tuple[str | None, bool]] = []
    warmed: list[object] = []

    def load(config: SpeechConfig) -> object:
        loads.append((config.tts_backend, config.voice_conversion))
        return object()

    models = VariantModels(load, lambda config, loaded: warmed.append(loaded))  # type: ignore[arg-type]
    base = SpeechConfig(source="en", target="pt")
    defaults = models(base)
    assert models(apply_settings(base, {"clauses.max_words": 4, "asr_margin_s": 0.45})) is defaults
    piper = models(apply_settings(base, {"tts_backend": "piper"}))
    assert piper is not defaults
    assert models(apply_settings(base, {"tts_backend": "piper", "asr_step_s": 0.75})) is piper
    assert models(apply_settings(base, {"voice_conversion": False})) not in (defaults, piper)
    assert loads == [(None, True), ("piper", True), (None, False)]
    assert warmed == list(models.loaded.values())  # each load warmed once, before any measured run


def test_piper_proxy_voice_reads_the_target_language_with_the_installed_voice() -> None:
    from benchmarks.piper_proxy import proxy_voice
    from rt_f2f.tts.piper import DEFAULT_VOICE, PiperSynthesizer

    synth = proxy_voice("pt")
    audio = synth.synthesize("Bom dia a todos.", "pt")
    assert audio.size > synth.sample_rate * 0.3 and float(abs(audio).max()) > 0.05
    assert "en" in synth.languages and "pt" not in PiperSynthesizer(DEFAULT_VOICE).languages  # only the proxy
