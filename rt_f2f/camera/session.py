"""One ``rt-f2f camera`` run: input -> speech engine + face-to-face core -> pacer -> virtual devices or files.

The wiring is the call server's lip-synced feed without the network: the speaker's audio feeds the speech engine
(through a bounded queue: what the engine cannot take is counted, never silently lost) and, with the frames, the
``LiveFaceToFace`` core, whose scheduler places translated speech and source frames on one output clock
(output = input + D, speech never later than D_max) and whose ``FrameSink`` re-mouths frames with lip-sync. Its
audio and frames go to the ``OutputPacer``, which sends both at their playout time on that same clock. The A/V offset
reported per frame is the scheduler's (which moment of the source a frame shows against the audio of that moment)
plus what the outputs added: how late the frame left and how late its audio played on a sound device (files are
positional, so they add nothing).

Timing defaults are the call server's (``CallLipSyncConfig``): D = 2 s, D_max = 20 s on CPU, 25 fps out, lip-sync
batches of 4 with the render budget it measured; a frame whose render would miss its playout goes out with its
original mouth (counted) and a re-mouthed version replaces it only when it comes in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..av.config import OUTPUT_RATE, FaceToFaceConfig, FaceToFaceResult, build_scheduler
from ..av.live import FrameSink, LiveFaceToFace
from ..av.schedule import ScheduledAudio, ScheduledVideo
from ..frames import AudioChunk, Caption, SpeechChunk, VideoFrame
from .audio_out import AudioSink, DeviceAudioSink
from .inputs import LiveInput
from .pacer import OutputPacer
from .video_out import VideoSink

log = logging.getLogger(__name__)

OUTPUT_FPS = 25.0  # Wav2Lip's rate; the scheduler re-times any camera rate onto it
RENDER_LAG_WINDOW = 500  # recent frames behind the render-lag figure (20 s at 25 fps)
ENGINE_QUEUE_S = 30.0  # input audio the speech engine may fall behind by before chunks are dropped (counted)


@dataclass
class CameraConfig:
    delay: float = 2.0
    max_delay: float = 20.0
    duration: float | None = None  # seconds of output; None: until stopped
    status_every: float = 1.0  # seconds between status lines (0: none)
    live_video: bool = False  # frames go to a device (a virtual camera), not a file


class RecordingFrameSink(FrameSink):
    """The core's ``FrameSink``, noting each fresh frame's A/V offset by output slot on the way."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offsets: dict[int, float] = {}

    async def consume(self, item: ScheduledAudio | ScheduledVideo) -> None:
        if isinstance(item, ScheduledVideo) and not item.repeat:
            self.offsets[item.slot] = item.av_offset
            if len(self.offsets) > 2000:  # slots the pacer never asked for (it stopped): keep the newest
                for slot in sorted(self.offsets)[:1000]:
                    del self.offsets[slot]
        await super().consume(item)

    def take_offset(self, slot: int) -> float | None:
        """The pacer asks once per slot it sends."""
        return self.offsets.pop(slot, None)


@dataclass
class CameraRun:
    """What a run did, for the report and the tests."""

    result: FaceToFaceResult
    pacer: OutputPacer
    sink: RecordingFrameSink
    captions: list[Caption] = field(default_factory=list)
    input_audio_s: float = 0.0
    input_frames: int = 0
    engine_dropped_s: float = 0.0
    stopped_by: str = ""
    origin: float = 0.0  # time.monotonic() of session time 0: output pts X plays at origin + X
    wall_seconds: float = 0.0
    status_lines: int = 0


class CameraSession:
    """``engine`` is a ``SpeechEngine`` (or a test double with ``load`` / ``run``); ``lipsync`` a
    ``LipSyncModel`` from ``rt_f2f.server.feeds.lipsync_model`` or None (the delayed picture passes through)."""

    def __init__(
        self,
        engine: Any,
        lipsync: Any | None,
        media: LiveInput,
        video_sinks: list[VideoSink],
        audio_sinks: list[AudioSink],
        config: CameraConfig,
        status: Callable[[str], None] | None = None,
    ) -> None:
        self.engine, self.lipsync, self.media = engine, lipsync, media
        self.video_sinks, self.audio_sinks = video_sinks, audio_sinks
        self.config = config
        self.status = status
        self._stop = asyncio.Event()
        self.stopped_by = ""

    def stop(self, why: str = "stopped") -> None:
        self.stopped_by = self.stopped_by or why
        self._stop.set()

    def _face_to_face(self) -> tuple[FaceToFaceConfig, float | None]:
        c = self.config
        if self.lipsync is not None:
            from dataclasses import replace

            call = replace(self.lipsync.config, delay_s=c.delay, max_delay_s=max(c.max_delay, c.delay))
            return call.face_to_face(), call.batch_latency_s
        return (
            FaceToFaceConfig(
                delay=c.delay,
                max_delay=max(c.max_delay, c.delay),
                fps=OUTPUT_FPS,
                realtime=True,
                provisional_frames=True,
            ),
            None,
        )

    async def run(self) -> CameraRun:
        """Run until ``duration`` seconds of output are out, ``stop()`` (Ctrl-C) or an error (raised, after the
        outputs are closed with nothing half-written left behind)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.stop, "Ctrl-C" if sig == signal.SIGINT else "SIGTERM")
        try:
            return await self._run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)

    async def _run(self) -> CameraRun:
        config, batch_latency = self._face_to_face()
        c = self.config
        origin = time.monotonic() + 0.05
        end_slot = round(c.duration * OUTPUT_FPS) if c.duration else None
        devices = [s for s in self.audio_sinks if isinstance(s, DeviceAudioSink)]
        for device in devices:
            device.set_clock(origin, c.delay)
        scheduler = build_scheduler(config, batch_latency, OUTPUT_RATE, origin)
        result = FaceToFaceResult(render_lag=deque(maxlen=RENDER_LAG_WINDOW), scheduler=scheduler)
        factory = self.lipsync.stream if self.lipsync is not None else None
        outputs: list[OutputPacer] = []
        sink = RecordingFrameSink(
            result,
            lambda frame: outputs[0].put_frame(frame),
            factory,
            config,
            origin_wall=lambda: origin,
            on_audio=lambda chunk: outputs[0].put_audio(chunk),
        )
        pacer = OutputPacer(
            origin, c.delay, OUTPUT_FPS, OUTPUT_RATE, (self.media.width, self.media.height),
            self.video_sinks, self.audio_sinks, end_slot, offset_of=sink.take_offset,
            audio_late=lambda: max((d.late_s for d in devices), default=0.0), live_video=c.live_video,
        )  # fmt: skip
        outputs.append(pacer)
        live = LiveFaceToFace(scheduler, sink)
        state = CameraRun(result, pacer, sink, origin=origin)
        queue: asyncio.Queue[AudioChunk] = asyncio.Queue(maxsize=int(ENGINE_QUEUE_S / 0.05))

        def on_audio(chunk: AudioChunk, wall: float) -> None:
            live.note_audio(chunk.end, wall)
            state.input_audio_s += chunk.duration
            try:
                queue.put_nowait(chunk)
            except asyncio.QueueFull:
                state.engine_dropped_s += chunk.duration

        def on_video(frame: VideoFrame, wall: float) -> None:
            state.input_frames += 1
            live.push_video(frame)

        async def audio_in() -> AsyncIterator[AudioChunk]:
            while True:
                yield await queue.get()

        async def engine() -> None:
            async for item in self.engine.run(audio_in()):
                if isinstance(item, Caption):
                    if item.final:
                        state.captions.append(item)
                elif isinstance(item, SpeechChunk):
                    live.push_speech(item)

        tasks = {
            asyncio.create_task(self.media.run(origin, on_audio, on_video), name="camera-input"),
            asyncio.create_task(engine(), name="camera-engine"),
            asyncio.create_task(live.run(), name="camera-f2f"),
            asyncio.create_task(pacer.run(), name="camera-pacer"),
        }
        if c.status_every > 0 and self.status is not None:
            tasks.add(asyncio.create_task(self._status_loop(state), name="camera-status"))
        stop = asyncio.create_task(self._stop.wait(), name="camera-stop")
        done_wait = asyncio.create_task(pacer.done.wait(), name="camera-done")
        start = time.perf_counter()
        ok = False
        try:
            finished, _ = await asyncio.wait({*tasks, stop, done_wait}, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                if task in tasks and not task.cancelled() and task.exception() is not None:
                    raise task.exception()
            if done_wait in finished:
                self.stopped_by = self.stopped_by or "duration"
            elif stop not in finished:
                raise RuntimeError(f"a camera task ended early: {[t.get_name() for t in finished]}")
            ok = True
        finally:
            for task in (*tasks, stop, done_wait):
                task.cancel()
            await asyncio.gather(*tasks, stop, done_wait, return_exceptions=True)
            await live.abort()
            self.media.close()
            pacer.finish(ok)
        state.stopped_by = self.stopped_by
        state.wall_seconds = time.perf_counter() - start
        return state

    async def _status_loop(self, state: CameraRun) -> None:
        last_slots = 0
        while True:
            await asyncio.sleep(self.config.status_every)
            slots = state.pacer.stats.slots
            fps = (slots - last_slots) / self.config.status_every
            last_slots = slots
            self.status(status_line(state, self.config.delay, fps))
            state.status_lines += 1


def status_line(state: CameraRun, delay: float, fps: float) -> str:
    p = state.pacer.stats
    counts = state.sink.counts()
    offsets = p.offsets.recent
    sync = f"A/V {min(offsets) * 1000:+.0f}..{max(offsets) * 1000:+.0f} ms" if offsets else "A/V -"
    said = next((c.text for c in reversed(state.captions) if c.kind == "translation"), "")
    return (
        f"out {p.slots / OUTPUT_FPS:6.1f} s | delay {delay:.2f} s | {fps:4.1f} fps | mouths {counts['rendered']} "
        f"re-rendered, {counts['skipped_late']} skipped | frozen {p.frozen}, late renders {p.late_versions}, "
        f"audio dropped {state.engine_dropped_s:.1f} s | {sync}" + (f" | {said[:40]}" if said else "")
    )


def print_status(line: str) -> None:
    if sys.stderr.isatty():
        print(f"\r{line}\033[K", end="", file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


def build_report(
    state: CameraRun, config: CameraConfig, extra: dict[str, Any], device_audio: list[DeviceAudioSink]
) -> dict[str, Any]:
    metrics = state.result.scheduler.metrics() if state.result.scheduler else None
    p = state.pacer.stats
    log_ = p.offsets
    counts = state.sink.counts()
    return extra | {
        "delay_s": config.delay,
        "max_delay_s": config.max_delay,
        "stopped_by": state.stopped_by,
        "clock": {"origin_monotonic_s": state.origin, "first_output_pts_s": config.delay},
        "wall_seconds": state.wall_seconds,
        "output": {
            "fps": OUTPUT_FPS,
            "frames": p.slots,
            "seconds": p.slots / OUTPUT_FPS,
            "audio_rate": OUTPUT_RATE,
            "frames_fresh": p.fresh,
            "frames_frozen": p.frozen,
            "frames_black_before_first": p.filler,
            "versions_too_late": p.late_versions,
            "audio_chunks_late": p.audio_late_chunks,
            "audio_missing_s": p.audio_missing_s,
            "frame_send_late_p95_s": float(np.percentile(p.send_late, 95)) if p.send_late else None,
            "frame_send_late_max_s": p.send_late_max if p.send_late else None,
        },
        "av_offset": {
            "note": "audio minus picture of the same moment, + = audio late; ITU-R BT.1359: -45 ms .. +125 ms. "
            "The scheduler's offset of each fresh frame, plus how late a sound device played its audio, minus how "
            "late the frame left for a virtual camera (files are positional: frame k and sample k * rate / fps "
            "are one moment)",
            "frames": log_.count,
            "min_s": log_.low if log_.count else None,
            "max_s": log_.high if log_.count else None,
            "p50_s": float(np.median(log_.sample)) if log_.count else None,
            "in_bt1359": log_.inside / log_.count if log_.count else None,
            "over_time": log_.windows,
        },
        "devices": [
            {
                "name": s.name,
                "latency_s": s.latency,
                "underrun_s": s.underrun_samples / s.rate,
                "late_skipped_s": s.late_samples / s.rate,
                "resyncs": s.resyncs,
            }
            for s in device_audio
        ],
        "input": extra.get("input", {})
        | {
            "audio_s": state.input_audio_s,
            "frames": state.input_frames,
            "engine_dropped_audio_s": state.engine_dropped_s,
        },
        "lipsync": extra.get("lipsync", {})
        | {
            "frames_rendered": counts["rendered"],
            "frames_skipped_late": counts["skipped_late"],
            "frames_without_face": counts["without_face"],
            "overflow": state.sink.overflow,
            "render_lag_p95_s": float(np.percentile(state.result.render_lag, 95)) if state.result.render_lag else None,
        },
        "transcript": " ".join(c.text for c in state.captions if c.kind == "source"),
        "translation": " ".join(c.text for c in state.captions if c.kind == "translation"),
        "scheduler": metrics.summary() if metrics else {},
        "output_delay": {
            "note": "start of each placed clause minus its source start (the picture always runs D behind)",
            "over_time": [{"output_pts": t, "delay_s": d} for t, d in (metrics.delay_series() if metrics else [])],
        },
    }
