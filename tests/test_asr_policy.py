"""Streaming commit policies, driven by synthetic hypotheses (properties) and by real Whisper on LibriVox speech."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rt_f2f.asr import word_error_rate
from rt_f2f.asr.base import ASRResult
from rt_f2f.asr.policy import AlignAttPolicy, FixedChunkPolicy, LocalAgreementPolicy, PolicyUpdate, normalise
from rt_f2f.asr.replay import replay
from rt_f2f.asr.stage import ASRStage
from rt_f2f.asr.window import FULL_WINDOW, STREAMING_WINDOW, EncoderWindow
from rt_f2f.frames import AudioChunk, ControlEvent, ControlKind, SpeechSegment, Transcript, Word, join_words
from rt_f2f.stage import LatencyLog, Pipeline

RATE = 1000  # the policies never look at the samples: a low rate keeps synthetic buffers small


class Checker:
    """Drives a policy through segments and checks what it emits at every step."""

    def __init__(self, policy) -> None:
        self.policy = policy
        self.session: list[str] = []  # committed text of finished segments

    def session_text(self) -> str:
        return " ".join([*self.session, join_words(self.policy.committed)]).strip()

    def apply(self, call) -> PolicyUpdate:
        before = self.policy.committed
        update: PolicyUpdate = call()
        after = self.policy.committed
        assert after[: len(before)] == before, "committed words changed"
        assert after[len(before) :] == update.committed, "the update is not exactly the newly committed words"
        starts = [w.start for w in after]
        assert starts == sorted(starts), "committed words go back in time"
        return update

    def segment(self, pts: float, duration: float, chunk: float) -> tuple[Word, ...]:
        self.policy.start_segment(pts)
        delta: list[Word] = []
        n = max(1, int(chunk * RATE))
        for _ in range(0, int(duration * RATE), n):
            self.policy.push(np.zeros(n, np.float32))
            if self.policy.ready():
                delta += self.apply(self.policy.step).committed
        final = self.apply(self.policy.finish)
        assert final.partial == ()
        delta += final.committed
        assert tuple(delta) == self.policy.committed, "a word was committed twice or never reported"
        self.session.append(join_words(self.policy.committed))
        return self.policy.committed


_vocab = st.sampled_from(["the", "a", "man", "young", "was", "not", "ill", "disposed", "he", "."])


# AlignAtt's margin is wider than the last second the synthetic recogniser is unsure of (plus its time jitter)
POLICY_MAKERS = {
    "local-agreement": LocalAgreementPolicy,
    "alignatt": lambda transcribe, **kw: AlignAttPolicy(transcribe, margin_s=1.05, **kw),
}


@pytest.mark.parametrize("make", POLICY_MAKERS.values(), ids=POLICY_MAKERS.keys())
@settings(max_examples=100, deadline=None)
@given(data=st.data(), min_chunk=st.floats(0.2, 1.5), chunk=st.floats(0.1, 1.0), cap=st.floats(2.0, 6.0))
def test_any_hypotheses_keep_commits_stable_and_single(make, data, min_chunk: float, chunk: float, cap: float):
    """Whatever the recogniser says, commits only grow, each word is reported once, and prompts are commits."""
    checker: Checker

    def transcribe(audio: np.ndarray, offset: float, prompt: str) -> list[Word]:
        assert prompt in checker.session_text(), "the prompt holds words that were never committed"
        end = offset + audio.size / RATE
        n = data.draw(st.integers(0, 8))
        times = sorted(data.draw(st.lists(st.floats(offset, end), min_size=2 * n, max_size=2 * n)))
        return [Word(" " + data.draw(_vocab), times[2 * i], times[2 * i + 1]) for i in range(n)]

    policy = make(transcribe, min_chunk_s=min_chunk, buffer_cap_s=cap, sample_rate=RATE)
    checker = Checker(policy)
    for pts in (0.0, 30.0):
        checker.segment(pts, data.draw(st.floats(0.0, 12.0)), chunk)


def _truth(spec: list[tuple[float, float, bool]]) -> list[Word]:
    t, out = 0.3, []
    for i, (gap, length, stop) in enumerate(spec):
        t += gap
        out.append(Word(f" w{i}{'.' if stop else ''}", round(t, 3), round(t + length, 3)))
        t += length
    return out


@pytest.mark.parametrize("make", POLICY_MAKERS.values(), ids=POLICY_MAKERS.keys())
@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    spec=st.lists(st.tuples(st.floats(0.0, 0.4), st.floats(0.12, 0.5), st.booleans()), min_size=1, max_size=70),
    min_chunk=st.floats(0.3, 1.5),
    chunk=st.floats(0.1, 1.0),
    cap=st.floats(3.0, 15.0),
)
def test_a_recogniser_unsure_only_of_its_last_second_is_transcribed_exactly(make, data, spec, min_chunk, chunk, cap):
    """Hypotheses are right except in their last second (wrong, missing or extra words, jittered times): the
    committed words are exactly the spoken ones, each once, in order, however the buffer is cut."""
    truth = _truth(spec)
    duration = truth[-1].end + 0.3
    calls = [0]

    def transcribe(audio: np.ndarray, offset: float, prompt: str) -> list[Word]:
        calls[0] += 1
        end = offset + audio.size / RATE
        settled = end >= duration - 1e-6  # the whole segment is in: the recogniser is sure
        out = []
        for w in truth:
            if (w.start + w.end) / 2 < offset or w.end > end:
                continue  # not in this buffer (a word cut in half by a trim belongs where its middle is)
            jitter = data.draw(st.floats(-0.04, 0.04))
            word = Word(w.text, round(w.start + jitter, 3), round(w.end + jitter, 3))
            if not settled and w.end > end - 1.0:
                choice = data.draw(st.sampled_from(["keep", "wrong", "drop"]))
                if choice == "drop":
                    continue
                if choice == "wrong":
                    word = Word(f" x{calls[0]}_{w.text.strip()}", word.start, word.end)
            out.append(word)
        if not settled and data.draw(st.booleans()):
            out.append(Word(f" extra{calls[0]}", max(offset, end - 0.2), end))
        return out

    policy = make(transcribe, min_chunk_s=min_chunk, buffer_cap_s=cap, sample_rate=RATE)
    committed = Checker(policy).segment(0.0, duration, chunk)
    assert [normalise(w.text) for w in committed] == [normalise(w.text) for w in truth]


def test_alignatt_commits_in_one_pass_the_words_behind_the_margin() -> None:
    hyp = [Word(" he", 0.0, 0.2), Word(" was", 0.2, 0.4), Word(" nut", 0.4, 0.6), Word(" an", 0.6, 0.7)]
    policy = AlignAttPolicy(lambda audio, offset, prompt: hyp, margin_s=0.35, min_chunk_s=0.5, sample_rate=RATE)
    policy.start_segment(0.0)
    policy.push(np.zeros(RATE, np.float32))  # 1.0 s heard: words ending by 0.65 s are stable
    update = policy.step()
    assert [w.text for w in update.committed] == [" he", " was", " nut"]  # one pass, no second hypothesis needed
    assert [w.text for w in update.partial] == [" an"]
    assert [w.text for w in policy.finish().committed] == [" an"]
    with pytest.raises(ValueError):
        AlignAttPolicy(lambda *a: [], margin_s=-1)


def test_alignatt_commits_every_word_at_a_pause_without_waiting_for_its_margin_or_a_step() -> None:
    hyp = [Word(" he", 0.0, 0.2), Word(" was", 0.2, 0.4), Word(" not", 0.4, 0.6)]
    calls: list[float] = []

    def transcribe(audio, offset, prompt):
        calls.append(offset + audio.size / RATE)
        return hyp

    policy = AlignAttPolicy(transcribe, margin_s=0.6, min_chunk_s=2.0, sample_rate=RATE)
    policy.start_segment(0.0)
    policy.push(np.zeros(int(0.8 * RATE), np.float32), trailing_silence_s=0.1)  # still talking: not ready
    assert not policy.ready()
    policy.push(np.zeros(int(0.2 * RATE), np.float32), trailing_silence_s=0.3)  # the speaker paused at 0.7 s
    assert policy.ready()  # long before min_chunk_s of new audio
    update = policy.step()
    assert [w.text for w in update.committed] == [" he", " was", " not"] and not update.partial  # inside the margin
    policy.push(np.zeros(int(0.2 * RATE), np.float32), trailing_silence_s=0.5)  # the same pause goes on
    assert not policy.ready()
    assert policy.finish().committed == () and calls == [1.0]  # nothing new to decode at the end of the segment
    # without pauses the margin holds back the last word, as before
    policy = AlignAttPolicy(transcribe, margin_s=0.6, pause_s=None, min_chunk_s=0.5, sample_rate=RATE)
    policy.start_segment(0.0)
    policy.push(np.zeros(RATE, np.float32), trailing_silence_s=0.3)
    assert [w.text for w in policy.step().committed] == [" he", " was"]


def test_a_word_whisper_hears_in_the_silence_of_a_pause_stays_a_guess() -> None:
    hyp = [Word(" he", 0.0, 0.2), Word(" was", 0.2, 0.6), Word(" of", 0.9, 1.0)]
    policy = AlignAttPolicy(lambda audio, offset, prompt: hyp, margin_s=0.6, sample_rate=RATE)
    policy.start_segment(0.0)
    policy.push(np.zeros(RATE, np.float32), trailing_silence_s=0.4)  # speech ends at 0.6 s
    update = policy.step()
    assert [w.text for w in update.committed] == [" he", " was"] and [w.text for w in update.partial] == [" of"]


def test_a_prompt_repeated_into_a_fraction_of_a_second_is_not_committed() -> None:
    """Seen on examples/en_sample.wav: after "young man." the buffer was cut at the sentence end and Whisper, given
    0.3 s of the word's tail and the sentence as prompt, answered the whole sentence again within 0.2 s."""
    said = [Word(" young", 0.0, 0.3), Word(" man.", 0.3, 0.6)]
    echo = [
        Word(w, 0.66 + 0.025 * i, 0.66 + 0.025 * (i + 1)) for i, w in enumerate(" He was not an ill".split(" ")[1:])
    ]
    hyps = iter([said, said + echo])
    policy = AlignAttPolicy(lambda audio, offset, prompt: next(hyps), margin_s=0.1, sample_rate=RATE)
    policy.start_segment(0.0)
    policy.push(np.zeros(int(0.8 * RATE), np.float32))
    assert [w.text for w in policy.step().committed] == [" young", " man."]
    policy.push(np.zeros(int(0.4 * RATE), np.float32))
    update = policy.step()
    assert update.committed == () and update.partial == ()


def test_alignatt_keeps_the_prefix_property() -> None:
    """A word behind the margin after an unstable one waits: commits are always a prefix of the hypothesis."""
    hyp = [Word(" he", 0.0, 0.2), Word(" mumbled", 0.2, 0.95), Word(" was", 0.3, 0.4)]  # odd times: trust order
    policy = AlignAttPolicy(lambda audio, offset, prompt: hyp, margin_s=0.3, sample_rate=RATE)
    policy.start_segment(0.0)
    policy.push(np.zeros(RATE, np.float32))
    assert [w.text for w in policy.step().committed] == [" he"]


def test_agreement_commits_only_what_two_hypotheses_share() -> None:
    hyps = iter(
        [
            [Word(" he", 0.0, 0.2), Word(" was", 0.2, 0.4), Word(" nut", 0.4, 0.6)],
            [Word(" he", 0.0, 0.2), Word(" was", 0.2, 0.4), Word(" not", 0.4, 0.6), Word(" an", 0.6, 0.7)],
            [Word(" He", 0.0, 0.2), Word(" was", 0.2, 0.4), Word(" not", 0.4, 0.6), Word(" an", 0.6, 0.8)],
        ]
    )
    policy = LocalAgreementPolicy(lambda a, o, p: next(hyps), min_chunk_s=0.5, sample_rate=RATE)
    policy.start_segment(0.0)
    policy.push(np.zeros(500, np.float32))
    first = policy.step()
    assert first.committed == () and [w.text for w in first.partial] == [" he", " was", " nut"]
    policy.push(np.zeros(500, np.float32))
    second = policy.step()
    assert [w.text for w in second.committed] == [" he", " was"]
    assert [w.text for w in second.partial] == [" not", " an"]
    policy.push(np.zeros(300, np.float32))
    final = policy.finish()
    assert [w.text for w in final.committed] == [" not", " an"]
    assert join_words(policy.committed) == "he was not an"


def test_the_buffer_is_cut_at_a_committed_sentence_end_and_the_sentence_becomes_the_prompt() -> None:
    seen: list[tuple[float, float, str]] = []
    sentence = [Word(" Hello", 0.0, 0.4), Word(" there.", 0.4, 0.9), Word(" How", 1.2, 1.5)]

    def transcribe(audio, offset, prompt):
        seen.append((offset, offset + audio.size / RATE, prompt))
        return [w for w in sentence if w.start >= offset]

    policy = LocalAgreementPolicy(transcribe, min_chunk_s=0.5, sample_rate=RATE)
    policy.start_segment(0.0)
    for _ in range(3):
        policy.push(np.zeros(600, np.float32))
        policy.step()
    assert seen[0] == (0.0, 0.6, "")
    assert join_words(policy.committed[:2]) == "Hello there."
    assert seen[2][0] == pytest.approx(0.9) and seen[2][2] == "Hello there."  # trimmed, and carried as prompt


def test_fixed_chunks_are_transcribed_alone_and_committed_at_once() -> None:
    seen: list[tuple[float, int]] = []

    def transcribe(audio, offset, prompt):
        seen.append((offset, audio.size))
        return [Word(f" c{len(seen)}", offset + 0.1, offset + 0.5)]

    policy = FixedChunkPolicy(transcribe, chunk_s=1.0, sample_rate=RATE)
    policy.start_segment(5.0)
    policy.push(np.zeros(2500, np.float32))
    update = policy.step()
    assert [w.text for w in update.committed] == [" c1", " c2"] and update.partial == ()
    final = policy.finish()
    assert [w.text for w in final.committed] == [" c3"]
    assert seen == [(5.0, 1000), (6.0, 1000), (7.0, 500)]


class FakeRecogniser:
    """Hears the words whose audio has arrived; detects 'de' when asked to."""

    def __init__(self, words: list[Word]) -> None:
        self.words = words
        self.languages: list[str | None] = []
        self.windows: list[EncoderWindow] = []

    def check_language(self, code: str | None) -> str | None:
        return code

    def transcribe(self, audio, language=None, prompt="", offset=0.0, beam_size=1, window=FULL_WINDOW) -> ASRResult:
        self.languages.append(language)
        self.windows.append(window)
        end = offset + audio.size / 16000
        return ASRResult(tuple(w for w in self.words if w.start >= offset - 1e-6 and w.end <= end), "de", 1.0)


async def test_asr_stage_turns_growing_segments_into_stable_transcripts() -> None:
    spoken = [Word(f" w{i}", 2.0 + 0.4 * i, 2.0 + 0.4 * i + 0.3) for i in range(10)]  # 2.0 .. 5.9 s
    audio = np.zeros(int(4.2 * 16000), np.float32)

    async def source():
        for k in range(1, 9):  # partials every 0.5 s, then the final
            yield SpeechSegment(AudioChunk(audio[: k * 8000], 16000, 2.0), 7, final=False)
        yield SpeechSegment(AudioChunk(audio, 16000, 2.0), 7, final=True)
        yield ControlEvent(ControlKind.END_OF_STREAM, 6.2)

    recogniser = FakeRecogniser(spoken)
    log = LatencyLog()
    out = [x async for x in Pipeline([ASRStage(recogniser)], log=log).run(source())]
    transcripts = [t for t in out if isinstance(t, Transcript)]
    assert isinstance(out[-1], ControlEvent)
    assert transcripts[-1].final and not any(t.final for t in transcripts[:-1])
    for prev, cur in zip(transcripts, transcripts[1:], strict=False):
        assert cur.committed[: len(prev.committed)] == prev.committed
    assert transcripts[-1].committed == tuple(spoken)
    assert all(t.segment_id == 7 and t.language == "de" for t in transcripts)
    assert recogniser.languages[0] is None and set(recogniser.languages[1:]) == {"de"}  # detected once, then kept
    assert len(log.for_stage("asr")) == len(transcripts)
    assert set(recogniser.windows) == {STREAMING_WINDOW}  # streaming steps never pay for 30 s of padding


async def test_asr_stage_passes_the_window_it_was_given() -> None:
    async def source():
        yield SpeechSegment(AudioChunk(np.zeros(32000, np.float32), 16000, 0.0), 1, final=True)

    recogniser = FakeRecogniser([Word(" hi", 0.5, 0.8)])
    stage = ASRStage(recogniser, language="en", window=FULL_WINDOW)
    out = [x async for x in Pipeline([stage]).run(source())]
    assert [t.text for t in out if isinstance(t, Transcript)] == ["hi"]
    assert recogniser.windows == [FULL_WINDOW]


def test_replay_without_computation_steps_at_every_chunk_however_slow_the_recogniser() -> None:
    calls: dict[bool, list[float]] = {True: [], False: []}

    def slow(aware: bool):
        def transcribe(audio, offset, prompt):
            calls[aware].append(offset + audio.size / RATE)
            time.sleep(0.05)  # each step outlasts the 0.02 s of audio that arrives meanwhile
            return []

        return transcribe

    audio = np.zeros(RATE // 5, np.float32)  # 0.2 s in 0.02 s pieces: 10 ready points
    for aware in (True, False):
        policy = LocalAgreementPolicy(slow(aware), min_chunk_s=0.02, sample_rate=RATE)
        replay(policy, audio, chunk_s=0.02, sample_rate=RATE, computation_aware=aware)
    assert calls[False] == pytest.approx([0.02 * k for k in range(1, 11)])  # 10 steps (finish: nothing new)
    assert len(calls[True]) < 10  # live, steps wait for each other and audio that arrived meanwhile joins in


def streaming_english(asr, window: EncoderWindow = STREAMING_WINDOW):
    """What ASRStage hands a policy: English, committed text as prompt, the streaming window."""

    def transcribe(audio, offset, prompt):
        return asr.transcribe(audio, language="en", prompt=prompt, offset=offset, window=window).words

    return transcribe


def test_streamed_librivox_speech_is_transcribed_well(whisper_base, librivox_clip) -> None:
    result = replay(LocalAgreementPolicy(streaming_english(whisper_base)), librivox_clip.audio(), chunk_s=0.5)
    assert word_error_rate(librivox_clip.text, result.text) <= 0.35, result.text
    ends = [c.word.end for c in result.commits]
    assert ends == sorted(ends) and ends[-1] <= librivox_clip.audio().size / 16000 + 0.1
    assert all(c.heard_at >= c.word.end - 0.1 for c in result.commits)  # nothing is committed before it is heard


@pytest.mark.slow
def test_fixed_chunks_transcribe_worse_or_equal_than_local_agreement(whisper_base, librivox_clips) -> None:
    transcribe = streaming_english(whisper_base)
    for clip in librivox_clips.values():
        agreed = replay(LocalAgreementPolicy(transcribe), clip.audio(), chunk_s=0.5)
        fixed = replay(FixedChunkPolicy(transcribe), clip.audio(), chunk_s=0.5)
        assert word_error_rate(clip.text, agreed.text) <= word_error_rate(clip.text, fixed.text) + 0.05


@pytest.mark.slow
def test_the_streaming_window_transcribes_as_well_as_30_s_padding(whisper_base, librivox_clips) -> None:
    """Steps at every second whatever they cost, so both runs hear the same buffers and only the window differs."""
    errors = {window: [] for window in (STREAMING_WINDOW, FULL_WINDOW)}
    for clip in librivox_clips.values():
        for window, found in errors.items():
            policy = LocalAgreementPolicy(streaming_english(whisper_base, window))
            found.append(word_error_rate(clip.text, replay(policy, clip.audio(), computation_aware=False).text))
    assert np.mean(errors[STREAMING_WINDOW]) <= np.mean(errors[FULL_WINDOW]) + 0.02, errors


@pytest.mark.slow
async def test_vad_asr_and_clauses_turn_two_utterances_into_clauses(whisper_base, librivox_clips) -> None:
    from rt_f2f.clauses import ClauseStage
    from rt_f2f.frames import Clause
    from rt_f2f.vad import VADStage

    a, b = librivox_clips["0880"], librivox_clips["0890"]
    gap = np.zeros(16000, np.float32)
    signal = np.concatenate([gap, a.audio(), gap, b.audio(), gap])

    async def source():
        for i in range(0, signal.size, 320):
            yield AudioChunk(signal[i : i + 320], 16000, 50.0 + i / 16000)

    log = LatencyLog()
    stages = [VADStage(), ASRStage(whisper_base, language="en"), ClauseStage()]
    clauses = [c async for c in Pipeline(stages, log=log).run(source()) if isinstance(c, Clause)]
    text = " ".join(c.text for c in clauses)
    assert word_error_rate(f"{a.text} {b.text}", text) <= 0.2, text
    ends = [w.end for c in clauses for w in c.words]
    assert ends == sorted(ends) and 50.0 < ends[0] and ends[-1] < 50.0 + signal.size / 16000
    assert {r.stage for r in log.records} == {"vad", "asr", "clauses"}


def test_the_call_engine_and_an_events_source_recogniser_listen_alike() -> None:
    from rt_f2f.event.source_asr import SourceASR
    from rt_f2f.recognition import RecognitionConfig, recognition_stages
    from rt_f2f.speech import SpeechConfig

    call = SpeechConfig(source="en", target="pt").recognition
    event = SourceASR(FakeRecogniser([]), "en", lambda clause: None, lambda caption: None)
    assert event.recognition == call
    vad, asr, clauses = recognition_stages(FakeRecogniser([]), "en", call)
    assert isinstance(asr.policy, AlignAttPolicy) and asr.policy.margin_s == call.asr_margin_s
    assert asr.policy.pause_s is None and vad.segmenter.config.pause_ms == 0  # pause commits are opt-in
    vad, asr, _ = recognition_stages(FakeRecogniser([]), "en", RecognitionConfig(pause_commit=True))
    assert asr.policy.pause_s is not None and vad.segmenter.config.pause_ms > 0  # pauses commit at once
    vad, asr, _ = recognition_stages(FakeRecogniser([]), "en", RecognitionConfig(asr_policy="local-agreement"))
    assert type(asr.policy) is LocalAgreementPolicy and vad.segmenter.config.pause_ms == 0
