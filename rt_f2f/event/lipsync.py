"""Lip-sync in event mode: one translator's re-mouthed video and its translated speech on one clock.

A call server's lip-sync feed already does this job for a call's listeners (``server.feeds.lipsync.LipSyncVideo``:
the A/V scheduler and ``LipSyncStream`` of ``rt_f2f.av``, and a ``Pacer`` that publishes audio and frames at their
playout time). ``EventLipSync`` hosts that same policy inside a translator worker instead of copying it; what
differs is where its inputs come from and where its output goes:

- Session clock: the speaker's audio as the worker receives it from the original mountpoint (which it watches for
  the frames anyway), counted in samples, as the call server counts a speaker's audio. Clauses come from the
  event's one ASR on that ASR's own clock; each carries the wall time its last word was heard
  (``SourceClause.spoken_at``), which places it on this worker's clock: both hear the same stream from the same
  Janus, so the same moment arrives at about the same wall time.
- Output: the pacer's relays fill the worker's ``PcmFifo`` and ``LatestFrames``, which its published tracks read
  exactly as they do without lip-sync, so one feed carries the re-mouthed frames and the speech they were
  rendered for.

Mouth-to-ear per clause (the worker's ``delay_s``) is measured once a clause has played: where the scheduler put
it on the output clock, minus when its last word was spoken. Speech that arrives before any of the speaker's audio
(no clock to place it on) is not played, and counted.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import av
import numpy as np

from ..frames import AudioChunk, Clause, SpeechChunk
from ..server.buffers import LatestFrames, PcmFifo
from ..server.feeds.lipsync import LipSyncVideo
from ..server.feeds.lipsync_model import LipSyncModel
from ..server.relay import Relay
from ..server.tasks import cancel_and_wait
from ..server.timebase import WEBRTC_RATE

GAP_S = 1.0  # audio that resumes this much later than its sample count says (a Janus restart): the clock jumps
TIMINGS_EVERY_S = 1.0  # the scheduler's clause timings are read at most this often (health calls come twice a second)
MAX_WAITING_CLAUSES = 256  # spoken-at times kept for clauses not yet played (a dropped clause never plays)


class _Host:
    """The ``PolicyHost`` a translator offers the call server's lip-sync policy: relays and a task set."""

    def __init__(self, speaker: str) -> None:
        self.speaker = speaker
        self.audio: Relay[AudioChunk] = Relay()
        self.video: Relay[av.VideoFrame] = Relay()
        self.tasks: set[asyncio.Task] = set()

    def name(self, what: str) -> str:
        return f"{what}-{self.speaker}"


class _FifoSink:
    """The pacer's audio (48 kHz chunks) into the worker's outgoing FIFO."""

    def __init__(self, fifo: PcmFifo) -> None:
        self.fifo = fifo

    def put(self, chunk: AudioChunk) -> None:
        self.fifo.put(chunk.samples)


class EventLipSync:
    """One translator's lip-sync: the speaker's audio and frames in, translated speech in, paced output out.

    ``fifo`` and ``frames`` are the worker's outgoing buffers (its published tracks read them); ``name`` tells this
    translator's tasks apart; ``clock`` is the monotonic clock arrivals are stamped with (tests move it).
    """

    def __init__(
        self,
        model: LipSyncModel,
        fifo: PcmFifo,
        frames: LatestFrames[av.VideoFrame],
        name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.clock = clock
        self.host = _Host(name)
        self.policy = LipSyncVideo(self.host, model)
        self.host.audio.subscribe(_FifoSink(fifo))
        self.host.video.subscribe(frames)
        self._started = False
        self._next_pts = 0.0  # session time of the next audio block
        self._anchor: tuple[float, float] | None = None  # (session time, time.monotonic) of the latest audio
        self._spoken: OrderedDict[int, float] = OrderedDict()  # clause id -> monotonic time its last word was heard
        self._timed = 0  # scheduler clause timings already read
        self._timings_read = 0.0
        self.frames_in = 0
        self.speech_without_clock = 0  # speech chunks that came before any of the speaker's audio: not played

    def start(self) -> None:
        """Start the pacer (once: the worker re-publishes after a Janus restart with the same clock)."""
        if not self._started:
            self._started = True
            self.policy.start()

    # -- the speaker, from the original mountpoint ---------------------------------------------------------------

    def on_audio(self, samples: np.ndarray, wall: float) -> None:
        """One decoded block of the speaker's audio (48 kHz), as the worker's watcher receives it."""
        now = self.clock()
        duration = samples.size / WEBRTC_RATE
        if self._anchor is not None:
            late = (now - self._anchor[1]) - (self._next_pts + duration - self._anchor[0])
            if late > GAP_S:  # no audio for a while (Janus restarted, the speaker reconnected): keep to the wall
                self._next_pts += late
        chunk = AudioChunk(samples, WEBRTC_RATE, self._next_pts, source=self.host.speaker)
        self._next_pts = chunk.end
        self._anchor = (chunk.end, now)
        self.policy.push_audio(chunk, now)

    def on_video(self, frame: av.VideoFrame) -> None:
        self.frames_in += 1
        self.policy.push_video(frame, self.clock())

    # -- the worker's clauses and speech -----------------------------------------------------------------------

    def clause(self, clause: Clause, spoken_at: float) -> Clause:
        """``clause`` with its word times moved onto this worker's session clock (``spoken_at``: ``time.time``
        when its last word was heard). Before any audio there is no clock: the clause is returned as it is, and its
        speech is counted as ``speech_without_clock``."""
        spoken = self.clock() - (time.time() - spoken_at)
        if self._anchor is None or not clause.words:
            return clause
        self._spoken[clause.clause_id] = spoken
        while len(self._spoken) > MAX_WAITING_CLAUSES:
            self._spoken.popitem(last=False)
        shift = self._anchor[0] + (spoken - self._anchor[1]) - clause.end
        words = tuple(replace(w, start=w.start + shift, end=w.end + shift) for w in clause.words)
        return replace(clause, words=words)

    def speech(self, chunk: SpeechChunk) -> bool:
        """Translated speech for the scheduler; False (counted) when there is no session clock yet."""
        if self.policy.live is None:
            self.speech_without_clock += 1
            return False
        self.policy.speech(chunk)
        return True

    def played_delays(self) -> list[float]:
        """Mouth-to-ear (seconds) of the clauses that finished playing since the last call."""
        live, now = self.policy.live, self.clock()
        if live is None or now - self._timings_read < TIMINGS_EVERY_S:
            return []
        self._timings_read = now
        clauses = live.scheduler.metrics().clauses
        fresh, self._timed = clauses[self._timed :], len(clauses)
        delays = []
        for timing in fresh:
            spoken = self._spoken.pop(timing.clause_id, None)
            if spoken is not None:
                delays.append(live.origin + timing.start_out - spoken)
        return delays

    # -- reporting and the end ---------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The call feed's lip-sync figures (rendered, sent with the original mouth, dropped) plus this worker's."""
        out = asdict(self.policy.stats())
        out.update(backend=self.model.backend_name, frames_in=self.frames_in,
                   video_before_audio=self.policy.video_before_audio,
                   speech_without_clock=self.speech_without_clock)  # fmt: skip
        return out

    async def stop(self) -> None:
        await self.policy.stop()
        await cancel_and_wait(self.host.tasks)
