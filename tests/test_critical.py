"""TTS priority (``critical.CriticalPath``): the ASR holds its next step while the TTS voices what a listener waits
for, never longer than the bound, and nothing changes with it off. Fakes only: no model is loaded."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fakes import Blocking, Echo, FakeClock, Listening

from rt_f2f.asr.base import ASRResult
from rt_f2f.asr.stage import ASRStage
from rt_f2f.critical import CriticalPath
from rt_f2f.errors import RtF2fError
from rt_f2f.frames import AudioChunk, Clause, SpeechChunk, SpeechSegment, Transcript, Translation, Word
from rt_f2f.recording import build_report, translate_recording
from rt_f2f.speech import SpeechConfig, SpeechEngine, SpeechModels
from rt_f2f.tts.select import SpeakingPace, TTSStage

RATE = 16000


def _segment(seconds: float, final: bool = False) -> SpeechSegment:
    return SpeechSegment(AudioChunk(np.zeros(int(seconds * RATE), np.float32), RATE, 0.0), 1, final=final)


async def _feed(stage: ASRStage, seconds: float, final: bool = False) -> list[Transcript]:
    return [t async for t in stage.process(_segment(seconds, final)) if isinstance(t, Transcript)]


def _translation(text: str, clause_id: int = 1) -> Translation:
    return Translation(Clause("x", (Word(" x", 1.0, 1.4),), "en", clause_id), text, "pt")


async def _voice(stage: TTSStage, translation: Translation) -> list[SpeechChunk]:
    return [c async for c in stage.process(translation)]


# -- the gate ------------------------------------------------------------------------------------------------------


def test_a_step_is_held_while_the_tts_is_busy_and_runs_when_it_clears() -> None:
    clock = FakeClock()
    gate = CriticalPath(clock=clock)
    assert not gate.hold_step(1.0)  # idle: run at once, nothing counted
    with gate.urgent():
        assert gate.busy and gate.hold_step(1.0) and gate.holding
        clock.now += 0.3
        assert gate.hold_step(1.5)
    clock.now += 0.1
    assert not gate.busy and not gate.hold_step(1.6) and not gate.holding
    assert (gate.steps_deferred, gate.bound_reached, gate.urgent_syntheses) == (1, 0, 1)
    assert gate.waited_s == pytest.approx(0.4)


@pytest.mark.parametrize("wall, audio", [(1.0, 0.2), (0.2, 1.0)], ids=["wall-time", "audio"])
def test_a_step_is_never_held_past_the_bound_in_wall_time_or_in_audio(wall: float, audio: float) -> None:
    """Live both grow alike; a run faster than real time hears a second of audio in much less wall time."""
    clock = FakeClock()
    gate = CriticalPath(max_wait_s=1.0, clock=clock)
    with gate.urgent():
        assert gate.hold_step(2.0)
        clock.now += wall * 0.9
        assert gate.hold_step(2.0 + audio * 0.9)
        clock.now += wall * 0.1
        assert not gate.hold_step(2.0 + audio)
        assert gate.hold_step(3.5)  # the next step may be held again, from its own start
    assert gate.bound_reached == 1 and gate.steps_deferred == 2
    assert gate.waited_s == pytest.approx(wall)


async def test_a_held_step_never_waits_past_the_bound_inside_a_slice() -> None:
    clock = FakeClock()
    gate = CriticalPath(max_wait_s=5.0, slice_s=5.0, clock=clock)
    with gate.urgent():
        assert gate.hold_step(1.0)
        clock.now += 4.95  # 0.05 s of the bound is left: the slice is cut to it, not the 5 s it could be
        assert await asyncio.wait_for(gate.hold(1.1), timeout=2.0)
        clock.now += 0.05
        assert not await gate.hold(1.2)
    assert gate.bound_reached == 1 and gate.waited_s == pytest.approx(5.0)


def test_a_failed_synthesis_clears_its_mark_and_the_report_counts_what_happened() -> None:
    clock = FakeClock()
    gate = CriticalPath(max_wait_s=0.8, clock=clock)
    with pytest.raises(RuntimeError), gate.urgent(), gate.urgent():  # two marks, both cleared by the failure
        assert gate.hold_step(1.0)
        clock.now += 0.25
        raise RuntimeError("the voice crashed")
    assert not gate.busy and not gate.hold_step(1.1)
    assert gate.summary() == {
        "enabled": True,
        "max_wait_s": 0.8,
        "urgent_syntheses": 2,
        "asr_steps_deferred": 1,
        "asr_waited_s": 0.25,
        "asr_bound_reached": 0,
    }
    with pytest.raises(RtF2fError, match="out of range"):
        CriticalPath(max_wait_s=0.0)


# -- the ASR stage -------------------------------------------------------------------------------------------------


def _held_asr() -> tuple[FakeClock, CriticalPath, Listening, ASRStage]:
    """An ASR stage behind a gate that answers at once: the test moves the clock between calls."""
    clock = FakeClock()
    gate = CriticalPath(slice_s=0.0, clock=clock)
    recogniser = Listening()
    return clock, gate, recogniser, ASRStage(recogniser, language="en", critical=gate)


async def test_the_asr_stage_keeps_listening_while_held_and_steps_on_all_it_heard_once_the_tts_is_idle() -> None:
    clock, gate, recogniser, stage = _held_asr()
    try:
        assert await _feed(stage, 0.5) == []
        with gate.urgent():
            assert await _feed(stage, 1.0) == [] and await _feed(stage, 1.5) == []  # ready, but held
            clock.now += 0.5
        assert recogniser.heard_s == []
        clock.now += 0.2
        (transcript,) = await _feed(stage, 2.0)  # the TTS went idle: the step hears all 2 s, not the 1 s it was
        assert recogniser.heard_s == [2.0] and not transcript.final
        assert gate.steps_deferred == 1 and gate.waited_s == pytest.approx(0.7)
    finally:
        stage.close()


async def test_the_end_of_a_segment_is_never_held_and_ends_the_hold() -> None:
    clock, gate, recogniser, stage = _held_asr()
    try:
        with gate.urgent():
            assert await _feed(stage, 1.0) == []
            clock.now += 0.3
            (final,) = await _feed(stage, 1.2, final=True)
        assert final.final and len(final.committed) == 2 and recogniser.heard_s == [1.2]
        assert not gate.holding and gate.waited_s == pytest.approx(0.3)
    finally:
        stage.close()


async def test_without_the_gate_the_asr_steps_as_before() -> None:
    recogniser = Listening()
    stage = ASRStage(recogniser, language="en")
    try:
        outs = [await _feed(stage, s) for s in (0.5, 1.0, 1.5, 2.0)]
        assert [len(o) for o in outs] == [0, 1, 0, 1] and recogniser.heard_s == [1.0, 2.0]
    finally:
        stage.close()


# -- the TTS stage, and both together ------------------------------------------------------------------------------


TEXT = "Um dois três. Quatro cinco seis."  # two phrases


@pytest.mark.parametrize("cost_s, marked", [(0.0, [True, False]), (1.0, [True, True])], ids=["ahead", "behind"])
async def test_the_tts_marks_what_the_listener_waits_for_and_not_what_it_voices_ahead(cost_s, marked) -> None:
    """Voiced in no time, the second phrase is made while the listener still hears 0.5 s of the first; voiced
    slower than real time, the listener has heard everything by then and waits for each phrase."""
    clock = FakeClock()
    gate = CriticalPath()
    synth = Blocking(gate, clock=clock, cost_s=cost_s)
    stage = TTSStage(synth, critical=gate, pace=SpeakingPace(max_speed=1.0, clock=clock))
    try:
        assert len(await _voice(stage, _translation(TEXT))) == 2
        assert synth.busy_during == marked and gate.urgent_syntheses == sum(marked) and not gate.busy
    finally:
        stage.close()


async def test_the_gate_changes_nothing_the_tts_voices() -> None:
    gate = CriticalPath()
    stages = [TTSStage(Blocking(gate), critical=gate, first_phrase_words=1), TTSStage(Blocking(), first_phrase_words=1)]
    try:
        with_gate, without = [await _voice(s, _translation(TEXT)) for s in stages]
        assert gate.urgent_syntheses >= 1 and len(with_gate) == 2
        assert [(c.first, c.last, c.pts, c.audio.samples.size) for c in with_gate] == [
            (c.first, c.last, c.pts, c.audio.samples.size) for c in without
        ]
    finally:
        for s in stages:
            s.close()


@pytest.mark.parametrize("fail", [False, True], ids=["finishes", "fails"])
async def test_an_asr_held_by_a_synthesis_steps_once_it_finishes_or_fails(fail: bool) -> None:
    gate = CriticalPath(max_wait_s=5.0, slice_s=0.1)
    synth = Blocking(gate, fail=fail)
    synth.go.clear()
    tts = TTSStage(synth, critical=gate)
    recogniser = Listening()
    asr = ASRStage(recogniser, language="en", critical=gate)
    try:
        voicing = asyncio.create_task(_voice(tts, _translation("Bom dia a todos.")))
        assert await asyncio.to_thread(synth.started.wait, 10)
        assert await _feed(asr, 1.0) == [] and gate.holding  # the event loop still runs while the ASR is held
        synth.go.set()
        if fail:
            with pytest.raises(RuntimeError, match="crashed"):
                await voicing
        else:
            assert len(await voicing) == 1
        assert not gate.busy
        assert len(await _feed(asr, 1.5)) == 1 and recogniser.heard_s == [1.5]
        assert gate.steps_deferred == 1 and gate.bound_reached == 0
    finally:
        synth.go.set()  # a failed assertion above must not leave the worker waiting
        tts.close()
        asr.close()


async def test_a_held_step_runs_as_soon_as_the_synthesis_ends_within_its_slice() -> None:
    gate = CriticalPath(max_wait_s=5.0, slice_s=5.0)
    order: list[str] = []

    class Logged(Listening):
        def transcribe(self, audio: np.ndarray, offset: float = 0.0, **options: object) -> ASRResult:
            order.append("asr")
            return super().transcribe(audio, offset, **options)

    synth = Blocking(gate)
    synth.go.clear()
    tts = TTSStage(synth, critical=gate)
    asr = ASRStage(Logged(), language="en", critical=gate)
    try:
        voicing = asyncio.create_task(_voice(tts, _translation("Bom dia a todos.")))
        assert await asyncio.to_thread(synth.started.wait, 10)
        asyncio.get_running_loop().call_later(0.05, lambda: (order.append("tts done"), synth.go.set()))
        assert len(await _feed(asr, 1.0)) == 1  # held, then stepped in the same call once the TTS was idle
        assert order == ["tts done", "asr"] and len(await voicing) == 1
        assert gate.steps_deferred == 1 and gate.bound_reached == 0 and not gate.holding
    finally:
        synth.go.set()
        tts.close()
        asr.close()


# -- the engine ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("on, live", [(False, True), (True, True), (True, False)])
def test_the_engine_shares_one_gate_between_its_asr_and_tts_only_when_asked_and_live(on: bool, live: bool) -> None:
    config = SpeechConfig("en", "pt", voice_conversion=False, tts_priority=on)
    engine = SpeechEngine(config, SpeechModels(Listening(), Echo(), Blocking(), None))
    stages = engine.stages(live)
    asr = next(s for s in stages if isinstance(s, ASRStage))
    tts = next(s for s in stages if isinstance(s, TTSStage))
    assert asr.critical is tts.critical is engine.critical
    assert (engine.critical is not None) is (on and live)
    assert SpeechConfig("en", "pt").tts_priority is True  # on by default since measured live (RESULTS.md)


@pytest.mark.parametrize("on, realtime", [(False, True), (True, True), (True, False)])
async def test_a_run_reports_what_the_gate_did(on: bool, realtime: bool) -> None:
    """A live run reports the gate's counts; a run faster than real time has none (its steps stay repeatable)."""
    config = SpeechConfig("en", "pt", voice_conversion=False, tts_priority=on)
    engine = SpeechEngine(config, SpeechModels(Listening(), Echo(), Blocking(), None))
    run = await translate_recording(engine, np.zeros(RATE, np.float32), realtime=realtime)
    report = build_report(run, config, "silence.wav")
    expected = engine.critical.summary() if on and realtime else {"enabled": False}
    assert report["tts_priority"] == run.tts_priority == expected
    assert report["tts_priority"]["enabled"] is (on and realtime)
