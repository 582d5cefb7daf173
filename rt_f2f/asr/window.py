"""How much audio Whisper's encoder is given per call: the cheapest lever on streaming ASR cost.

faster-whisper pads every call to Whisper's 30 s window (its ``chunk_length`` option only moves the seek window;
the encoder input is still padded to 3000 frames), so a 3 s streaming buffer pays for 27 s of silence, and the
encoder's cost grows faster than its input (self-attention): on 2 CPU cores whisper-base int8 encodes 30 s in
~0.5-0.9 s and 10 s in ~0.07 s. CTranslate2 encodes shorter inputs. Whisper was trained on 30 s windows, though:
with no silence after the speech it loses the last word or invents an ending ("I'm sorry."), and in very short
windows it mishears more, so the window keeps a floor and a margin. ``benchmarks/RESULTS.md`` (asr) holds the
measured cost and word error rates behind the defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import RtF2fError

FRAMES_PER_SECOND = 100  # Whisper's log-mel hop is 10 ms
WHISPER_WINDOW_S = 30  # what Whisper was trained on, and what faster-whisper pads every call to


@dataclass(frozen=True)
class EncoderWindow:
    """The encoder's input for a buffer: the buffer plus at least ``pad_s`` of silence, rounded up to a multiple
    of ``step_s`` (so few distinct sizes occur), at least ``min_s``, at most 30 s (longer audio is cut into 30 s
    windows by faster-whisper, as before). It always holds the whole buffer, so nothing heard is dropped.
    ``FULL_WINDOW`` is Whisper's own behaviour (always 30 s): offline decoding and the benchmark baseline."""

    step_s: int = 5
    min_s: int = 10
    pad_s: float = 1.0

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be a whole number of seconds from 1 to {WHISPER_WINDOW_S} (got {value!r})"
            for name, value in (("step_s", self.step_s), ("min_s", self.min_s))
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= WHISPER_WINDOW_S
        ]
        if not isinstance(self.pad_s, int | float) or not 0.0 <= self.pad_s <= WHISPER_WINDOW_S:
            problems.append(f"pad_s must be 0 to {WHISPER_WINDOW_S} seconds (got {self.pad_s!r})")
        if problems:
            raise RtF2fError(
                "invalid Whisper encoder window: " + "; ".join(problems),
                "use e.g. EncoderWindow(step_s=5, min_s=10, pad_s=1.0), or FULL_WINDOW for Whisper's 30 s",
            )

    def seconds(self, audio_s: float) -> int:
        needed = self.step_s * math.ceil((max(audio_s, 0.0) + self.pad_s) / self.step_s - 1e-9)
        return min(WHISPER_WINDOW_S, max(self.min_s, needed))

    def frames(self, audio_s: float) -> int:
        """Log-mel frames handed to the encoder for ``audio_s`` seconds of audio."""
        return self.seconds(audio_s) * FRAMES_PER_SECOND

    @property
    def is_full(self) -> bool:
        return self.min_s == WHISPER_WINDOW_S

    def describe(self) -> str:
        """The form ``parse`` reads: "full", or "STEP,MIN,PAD" in seconds."""
        return "full" if self.is_full else f"{self.step_s},{self.min_s},{self.pad_s:g}"

    @classmethod
    def parse(cls, spec: str) -> EncoderWindow:
        """A window from a command-line value: "full" (Whisper's 30 s) or "STEP,MIN[,PAD]" seconds, e.g. "5,10,1"."""
        text = str(spec).strip().lower()
        if text in ("full", "30"):
            return FULL_WINDOW
        parts = [p.strip() for p in text.split(",")]
        try:
            if len(parts) not in (2, 3):
                raise ValueError(text)
            step, floor = int(parts[0]), int(parts[1])
            pad = float(parts[2]) if len(parts) == 3 else cls.pad_s
        except ValueError:
            raise RtF2fError(
                f"cannot read the Whisper window '{spec}'",
                'give "full" or STEP,MIN[,PAD] in seconds, e.g. "5,10,1" (the default)',
            ) from None
        return cls(step, floor, pad)


FULL_WINDOW = EncoderWindow(step_s=WHISPER_WINDOW_S, min_s=WHISPER_WINDOW_S, pad_s=0.0)
STREAMING_WINDOW = EncoderWindow()
