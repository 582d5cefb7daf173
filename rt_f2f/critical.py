"""The critical path on two cores: the TTS voicing what a listener waits for goes before the next ASR step.

Kokoro and Whisper slow each other down ~1.6x when they run at once on two cores (a 3-word Portuguese phrase: 0.92 s
alone, 1.54 s beside a Whisper decode). An ASR step serves the *next* clause, whose speech cannot play before the
current clause's anyway, so while the TTS synthesises audio a listener is waiting for, the ASR holds its next step
back, for at most ``max_wait_s`` (wall time, and as much new audio) so it is never starved.

The TTS stage marks those syntheses (``urgent``, any thread); the ASR stage asks ``hold`` each time it has a step
ready. A held step waits on the event loop for the TTS to go idle, but only for ``slice_s`` at a time: the VAD sends
the growing segment every 0.5 s, and between slices the stage takes that audio in, so the step it runs when the TTS
goes idle (or the bound passes) hears nearly everything said so far rather than audio as stale as the whole wait.
Nothing is locked across a wait (it polls a counter), so nothing can deadlock on it; a synthesis that fails still
clears its mark. The end-of-segment flush (``finish``) is never held: it comes at a pause, with no later audio to
retry it on, and it commits the segment's last words. What it did is counted (``summary``) for the engine's report.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .errors import RtF2fError

DEFAULT_MAX_WAIT_S = 1.0  # one ASR step (asr_step_s): a held step at most doubles the next clause's commit delay
SLICE_S = 0.25  # a held step waits this long for the TTS at a time, then takes in the audio that came meanwhile
POLL_S = 0.02  # how often a waiting step looks at the TTS (a counter read on the event loop: costs nothing)


@dataclass
class CriticalPath:
    """Shared by one engine's TTS stage (which marks) and ASR stage (which holds its steps)."""

    max_wait_s: float = DEFAULT_MAX_WAIT_S
    slice_s: float = SLICE_S  # 0: never wait inside a call, only answer (the stage retries on its next audio)
    clock: Callable[[], float] = time.perf_counter
    urgent_syntheses: int = 0  # syntheses marked as awaited by a listener
    steps_deferred: int = 0  # ASR steps held back at least once
    waited_s: float = 0.0  # wall seconds those steps were held in all
    bound_reached: int = 0  # held steps that ran because the bound passed while the TTS was still busy
    _busy: int = field(default=0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _held_since: float | None = field(default=None, init=False, repr=False)
    _held_audio_from: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.max_wait_s <= 5.0 or not 0.0 <= self.slice_s <= self.max_wait_s:
            raise RtF2fError(
                f"TTS priority wait {self.max_wait_s} s / slice {self.slice_s} s is out of range",
                "use a wait of 0.5 to 2 seconds and a slice within it",
            )

    @contextmanager
    def urgent(self) -> Iterator[None]:
        """Around a synthesis a listener is waiting for; cleared however it ends (failure, cancellation)."""
        with self._lock:
            self._busy += 1
            self.urgent_syntheses += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy > 0

    @property
    def holding(self) -> bool:
        """A step is being held back now."""
        return self._held_since is not None

    async def hold(self, audio_end: float) -> bool:
        """``hold_step``, but a step held waits up to ``slice_s`` (never past the bound) on the event loop for the TTS
        to go idle, and runs at once (False) if it does."""
        if not self.hold_step(audio_end):
            return False
        left_of_bound = self.max_wait_s - (self.clock() - (self._held_since or 0.0))
        deadline = time.monotonic() + max(0.0, min(self.slice_s, left_of_bound))
        while self.busy and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(POLL_S, left))
        return self.hold_step(audio_end)

    def hold_step(self, audio_end: float) -> bool:
        """The ASR has a step ready with audio heard up to ``audio_end`` (media seconds): True to hold it back now
        (the TTS is busy and neither ``max_wait_s`` of wall time nor of new audio has passed since the hold began),
        False to run it. Called from the ASR stage's event loop only."""
        now = self.clock()
        if self._held_since is None:
            if not self.busy:
                return False
            self._held_since, self._held_audio_from = now, audio_end
            self.steps_deferred += 1
            return True
        within = now - self._held_since < self.max_wait_s and audio_end - self._held_audio_from < self.max_wait_s
        if self.busy:
            if within:
                return True
            self.bound_reached += 1
        self.release()
        return False

    def release(self) -> None:
        """The held step runs, or its segment ends (``finish`` commits what it would have): count the wait."""
        if self._held_since is not None:
            self.waited_s += self.clock() - self._held_since
            self._held_since = None

    def summary(self) -> dict[str, float | int]:
        """For the engine's report."""
        return {
            "enabled": True,
            "max_wait_s": self.max_wait_s,
            "urgent_syntheses": self.urgent_syntheses,
            "asr_steps_deferred": self.steps_deferred,
            "asr_waited_s": round(self.waited_s, 3),
            "asr_bound_reached": self.bound_reached,
        }
