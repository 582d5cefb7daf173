"""Replaying a recording through a streaming policy as if it streamed in live, for benchmarks and tests.

A replay measures what a policy costs in latency (each word's commit time against the end of its audio) without a
pipeline: the audio arrives in chunks on a simulated clock and each step takes the wall time it really took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..audio import resample
from ..frames import Word, join_words
from ..rates import ENGINE_RATE
from .policy import PolicyUpdate, StreamingPolicy


@dataclass(frozen=True)
class Commit:
    word: Word
    heard_at: float  # session time of the end of the audio the committing transcription had heard
    committed_at: float  # when the commit would land live: audio arrival, waiting for the worker, and compute


@dataclass
class ReplayResult:
    commits: list[Commit] = field(default_factory=list)
    compute_s: list[float] = field(default_factory=list)

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(c.word for c in self.commits)

    @property
    def text(self) -> str:
        return join_words(self.words)

    def mean_commit_latency(self, live: bool = True) -> float:
        """Mean of (commit time - word's audio end) in session time; ``live=False`` leaves out compute time."""
        if not self.commits:
            return float("nan")
        return float(np.mean([(c.committed_at if live else c.heard_at) - c.word.end for c in self.commits]))


def replay(
    policy: StreamingPolicy,
    audio: np.ndarray,
    chunk_s: float = 0.5,
    pts: float = 0.0,
    sample_rate: int = ENGINE_RATE,
    computation_aware: bool = True,
) -> ReplayResult:
    """Stream ``audio`` into ``policy`` in ``chunk_s`` pieces on a simulated live clock, as one segment.

    Each step starts when its audio has arrived and the previous step is done (audio that arrives meanwhile joins
    the next step, as it would live), and takes the wall time it really took, so commit latency includes compute.
    ``computation_aware=False`` runs a step whenever the policy is ready, as if compute were free (steps never
    wait or merge): the transcript then depends only on the audio, not on how busy the machine was, which is what
    an accuracy comparison between settings needs.
    """
    audio = np.asarray(audio, np.float32)
    if sample_rate != policy.sample_rate:
        audio = resample(audio, sample_rate, policy.sample_rate)
    n = max(1, int(round(chunk_s * policy.sample_rate)))
    policy.start_segment(pts)
    result = ReplayResult()
    busy_until = pts

    def run(call: Callable[[], PolicyUpdate], now: float) -> float:
        heard = policy.audio_end
        t0 = time.perf_counter()
        update = call()
        spent = time.perf_counter() - t0
        result.compute_s.append(spent)
        done = (max(now, busy_until) if computation_aware else now) + spent
        result.commits.extend(Commit(w, heard, done) for w in update.committed)
        return done

    for start in range(0, audio.size, n):
        policy.push(audio[start : start + n])
        now = pts + min(start + n, audio.size) / policy.sample_rate
        if policy.ready() and (now >= busy_until or not computation_aware):
            busy_until = run(policy.step, now)
    run(policy.finish, pts + audio.size / policy.sample_rate)
    return result
