"""Voice suite: how much closer to the speaker voice conversion brings the synthetic voice, and what it costs.

The speaker is a LibriVox reader (Debian pocketsphinx-testdata): the profile is enrolled on some of their clips,
and similarity (cosine of speaker d-vectors) is judged against other clips it never heard. The source voice is the
embedded Piper voice speaking English sentences; the baseline is that TTS output unconverted, measured in the same
run against the same held-out clips. The same-speaker similarity (enrolment clips vs held-out clips) is the
ceiling a perfect conversion would reach with this embedder.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.common import BenchContext, Suite, SuiteResult, skipped

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
ENROL = ("0870", "0890")  # the profile learns from these clips (one man reading) ...
HELD_OUT = ("0880", "0920", "0930")  # ... and similarity is judged against these, which it never heard

SENTENCES = [
    "The weather is lovely today, shall we go for a walk after lunch?",
    "Please bring the report and the new figures to the meeting tomorrow morning.",
    "We tested the system on a small machine, and the results were better than we expected.",
    "If the train is late again, I will take the bus, even though it is slower.",
    "She opened the window, looked at the garden, and decided to stay at home.",
    "Thank you all for coming today; I will be brief, because we have a lot to cover.",
]


def _clip(number: str) -> Path | None:
    found = sorted(LIBRIVOX.glob(f"*-{number}.wav"))
    return found[0] if found else None


def run(ctx: BenchContext) -> SuiteResult:
    enrol_paths = [_clip(n) for n in ENROL]
    held_paths = [_clip(n) for n in HELD_OUT]
    if not all(enrol_paths) or not all(held_paths):
        return skipped("voice", f"LibriVox clips {ENROL + HELD_OUT} not found: install Debian pocketsphinx-testdata")
    from rt_f2f.audio import read_audio
    from rt_f2f.errors import RtF2fError
    from rt_f2f.tts import get_synthesizer
    from rt_f2f.voice import SpeakerProfile, VoiceConverter, cosine, embed, get_embedder

    try:
        synth = get_synthesizer("en", backend="piper")
        get_embedder()
    except RtF2fError as exc:
        return skipped("voice", f"{exc.message} ({exc.hint})")
    rate = 16000
    enrol_audio = np.concatenate([read_audio(p, rate) for p in enrol_paths])
    held = {p.stem.rsplit("-", 1)[-1]: embed(read_audio(p, rate), rate) for p in held_paths}

    start = time.perf_counter()
    profile = SpeakerProfile.from_audio(enrol_audio, rate)
    enrol_s = time.perf_counter() - start
    target = profile.stats
    ceiling = [cosine(embed(enrol_audio, rate), e) for e in held.values()]

    sentences = SENTENCES[:2] if ctx.quick else SENTENCES
    converter = VoiceConverter()  # one per TTS voice, learning that voice from what it converts, as the VC stage does
    before, after, rtf, f0_gap_before, f0_gap_after = [], [], [], [], []
    for text in sentences:
        ctx.progress(f"  voice: {text[:40]}...")
        audio = synth.synthesize(text, "en")
        start = time.perf_counter()
        converted = converter.convert(audio, synth.sample_rate, target)
        rtf.append((time.perf_counter() - start) / (audio.size / synth.sample_rate))
        e_tts, e_conv = embed(audio, synth.sample_rate), embed(converted, synth.sample_rate)
        before += [cosine(e_tts, e) for e in held.values()]
        after += [cosine(e_conv, e) for e in held.values()]
        tts_stats = SpeakerProfile.from_audio(audio, synth.sample_rate, embedder=False).stats
        out_stats = SpeakerProfile.from_audio(converted, synth.sample_rate, embedder=False).stats
        f0_gap_before.append(abs(tts_stats.log_f0_mean - target.log_f0_mean) * 1200 / np.log(2))
        f0_gap_after.append(abs(out_stats.log_f0_mean - target.log_f0_mean) * 1200 / np.log(2))

    result = SuiteResult(
        "voice",
        settings={
            "source_voice": synth.describe(),
            "converter": "WORLD (pitch, formant warp, envelope equalisation)",
            "enrol_clips": list(ENROL),
            "held_out_clips": list(HELD_OUT),
            "sentences": len(sentences),
            "speaker_f0_hz": target.f0_hz,
        },
    )
    n = len(before)
    result.add("speaker similarity, unconverted TTS (baseline)", float(np.mean(before)), "cosine", n, "higher")
    result.add("speaker similarity, converted", float(np.mean(after)), "cosine", n, "higher")
    result.add(
        "similarity gained by conversion",
        float(np.mean(after) - np.mean(before)),
        "cosine",
        n,
        "higher",
        note="converted minus unconverted, same sentences, same held-out clips",
    )
    gap = np.mean(ceiling) - np.mean(before)
    result.add(
        "fraction of the gap to the same-speaker ceiling closed",
        float((np.mean(after) - np.mean(before)) / gap) if gap > 0 else 0.0,
        "fraction",
        n,
        "higher",
        note="1 would make the TTS as similar to the held-out clips as the speaker's own other clips are",
    )
    result.add("same-speaker similarity (ceiling)", float(np.mean(ceiling)), "cosine", len(ceiling), "none")
    result.add(
        "pitch gap to the speaker, unconverted (baseline)", float(np.mean(f0_gap_before)), "cents", len(sentences)
    )
    result.add("pitch gap to the speaker, converted", float(np.mean(f0_gap_after)), "cents", len(sentences))
    result.add_stats("conversion real-time factor", rtf, "compute s / audio s")
    result.add(
        "enrolment real-time factor",
        enrol_s / (enrol_audio.size / rate),
        "compute s / audio s",
        1,
        note="whole-clip enrolment (WORLD analysis, formants, d-vector)",
    )
    return result


SUITE = Suite("voice", "voice conversion: speaker similarity before vs after, and its cost", run)
