"""The lip-sync generator a call server shares between feeds, and how lip-synced call media is timed.

Timing for calls (``CallLipSyncConfig``):

- D = 2 s: only the picture waits D. Lip-sync makes the mouth follow the translated voice whatever that voice's lag,
  so D need not cover the speech engine; it covers what the picture itself needs: Wav2Lip's 0.2 s of audio after
  a frame, the batching latency (0.3 s) and a render budget (0.8 s) on a CPU that also runs ASR, MT and TTS.
  Faces that react two seconds late still read as a live conversation; a larger D only makes every nod later.
- D_max = 20 s: on 2 CPU cores the speech engine takes 5-15 s per clause (mouth-to-ear 12-17 s measured), so the
  file pipeline's 4 s would drop most speech. 20 s keeps every clause the engine delivers in its usual range and
  still drops what is so stale that an answer to it would make no sense. On a GPU machine lower both.
- 25 fps out (Wav2Lip's rate; the scheduler re-times any camera rate onto it), batches of 4 frames.

The generator is loaded once per server (``load_lipsync``) and shared by every feed; each feed has its own
``LipSyncStream`` (face tracker, audio buffer, queue), built on that feed's worker thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ...av.config import FaceToFaceConfig
from ...av.schedule import AUDIO_EARLY_LIMIT
from ...errors import RtF2fError

if TYPE_CHECKING:
    from ...lipsync.backends import LipSyncBackend
    from ...lipsync.stream import LipSyncStream

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallLipSyncConfig:
    """How lip-synced call media is timed; the module docstring says why these numbers."""

    delay_s: float = 2.0
    max_delay_s: float = 20.0
    fps: float = 25.0
    batch: int = 4  # frames per generator call
    batch_latency_s: float = 0.3  # media time a frame may wait for its batch (>= 0.225 s of audio Wav2Lip needs)
    render_budget_s: float = 0.8  # lead beyond the batching latency that frames get for their render
    max_render_lag_s: float = 0.0  # a frame whose render is predicted to land after its playout is not rendered
    # frames that would go out this long after the audio of their moment are dropped (5 ms inside BT.1359's 45 ms)
    late_frame_s: float = AUDIO_EARLY_LIMIT - 0.005

    def face_to_face(self) -> FaceToFaceConfig:
        return FaceToFaceConfig(
            delay=self.delay_s,
            max_delay=self.max_delay_s,
            fps=self.fps,
            realtime=True,
            provisional_frames=True,
            lipsync_batch=self.batch,
            max_render_lag=self.max_render_lag_s,
            render_budget=self.render_budget_s,
        )


@dataclass
class LipSyncModel:
    """The Wav2Lip generator, loaded once per server and shared by every feed (one ``LipSyncStream`` per feed)."""

    backend: LipSyncBackend
    backend_name: str
    checkpoint: Path
    config: CallLipSyncConfig

    def stream(self) -> LipSyncStream:
        """A new stream for one feed (called on that feed's worker thread: its face detector lives there)."""
        from ...lipsync.stream import LipSyncStream, lookahead_s

        c = self.config
        # LipGAN reads more audio per frame (27 mel steps) than Wav2Lip: its frames may wait for it
        lookahead = lookahead_s(getattr(self.backend, "mel_window", 16))
        # Frames not sent to the generator do not advance the stream's clock, so it cannot trim old audio by itself;
        # a few seconds cover every frame it is given (audio is committed 0.2 s ahead of them).
        return LipSyncStream(
            self.backend,
            fps=c.fps,
            batch_size=c.batch,
            max_latency_s=max(c.batch_latency_s, lookahead + 0.075),
            max_buffer_s=3.0,
        )


def load_lipsync(
    checkpoint: str | Path, backend: str | None = None, config: CallLipSyncConfig | None = None
) -> LipSyncModel:
    """Load and warm up the generator; a missing or malformed checkpoint fails here, at server start."""
    from ...lipsync.backends import default_backend, load_backend

    config = config or CallLipSyncConfig()
    name = backend or default_backend(checkpoint)
    opts = {"max_batch": config.batch} if name.startswith("torch") else {}
    engine = load_backend(name, checkpoint, **opts)
    engine.warmup(config.batch)  # the first call's frames should not pay for lazy initialisation
    return LipSyncModel(engine, name, Path(checkpoint), config)


def lipsync_for_server(checkpoint: str | Path | None, backend: str | None = None) -> LipSyncModel | None:
    """The generator ``rt-f2f serve`` uses: ``checkpoint`` if given, else the model store's ``wav2lip`` when it is
    on disk (``rt-f2f models pull wav2lip`` or ``RT_F2F_MODEL_WAV2LIP``); None, said in one log line, otherwise."""
    if checkpoint is None:
        from ...models.store import get_store

        status = get_store().status("wav2lip")
        if status.where in ("env", "cache"):
            checkpoint = get_store().path("wav2lip")  # an env var pointing nowhere fails here, with its name
        elif backend is not None:
            raise RtF2fError(
                "--lipsync-backend given, but there is no Wav2Lip checkpoint",
                "pass --checkpoint_path wav2lip.pth, or run `rt-f2f models pull wav2lip`",
            )
        else:
            log.warning(
                "lip-sync off: translated calls show the original mouth, delayed. To enable it, pass "
                "--checkpoint_path wav2lip.pth, set RT_F2F_MODEL_WAV2LIP, or run `rt-f2f models pull wav2lip`"
            )
            return None
    return load_lipsync(checkpoint, backend)
