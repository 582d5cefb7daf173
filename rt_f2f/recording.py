"""A recording through the speech engine: the translated speech on one output timeline, and the report on it.

``translate_recording`` streams the samples in (at real time or as fast as the engine goes), places each clause's
speech where a listener would hear it (``place``), and returns a ``SpeechRun``; ``build_report`` turns that into
the JSON ``rt-f2f speech --report`` writes and the speech benchmark reads. Fast runs are computation-unaware: a
clause is placed at its source time, so their ear-voice spans say nothing about live latency (and can be negative).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .audio import resample
from .frames import Caption, Clause
from .rates import ENGINE_RATE
from .speech import SpeechConfig, SpeechEngine, file_chunks
from .stage import LatencyLog
from .waterfall import ClauseWaterfall, stage_shares


@dataclass
class ClauseRecord:
    clause_id: int
    source_text: str
    source_start: float
    source_end: float
    first_word_end: float
    translation: str = ""
    audio_ready: float | None = None  # session time the first translated audio existed
    output_start: float | None = None
    output_end: float | None = None

    @property
    def ear_voice_span(self) -> float | None:
        """Source word end -> translated audio start (first word of the clause, as heard live)."""
        return None if self.output_start is None else self.output_start - self.first_word_end


@dataclass
class SpeechRun:
    """What one run of the engine over a recording produced."""

    audio: np.ndarray
    sample_rate: int
    clauses: list[ClauseRecord]
    log: LatencyLog
    duration: float
    wall: float
    realtime: bool
    source_captions: list[Caption] = field(default_factory=list)
    voice: dict[str, Any] = field(default_factory=dict)
    waterfall: list[ClauseWaterfall] = field(default_factory=list)
    tts_priority: dict[str, float | int] = field(default_factory=dict)  # what critical.CriticalPath did, if on


def place(records: list[ClauseRecord], realtime: bool) -> None:
    """Put each clause's speech on the output timeline.

    Live (``realtime``): a listener hears it when it exists, after the previous clause. Offline: as early as its
    source allows (its first source word), after the previous clause, as a dub would.
    """
    cursor = 0.0
    for rec in records:
        if rec.audio_ready is None:
            continue
        earliest = rec.audio_ready if realtime else rec.source_start
        rec.output_start = max(earliest, cursor)
        rec.output_end = rec.output_start + (rec.output_end or 0.0)  # output_end held the duration until now
        cursor = rec.output_end


async def translate_recording(
    engine: SpeechEngine, samples: np.ndarray, realtime: bool, on_progress: Callable[[str], None] | None = None
) -> SpeechRun:
    """Stream a 16 kHz recording through the engine and assemble the translated speech timeline."""
    await asyncio.to_thread(engine.load)
    out_rate = engine.models.synthesizer.sample_rate
    records: dict[int, ClauseRecord] = {}
    audio: dict[int, list[np.ndarray]] = {}
    source_captions: list[Caption] = []
    t0 = engine.origin = time.perf_counter()
    async for item in engine.run(file_chunks(samples, ENGINE_RATE, realtime, t0=t0), live=realtime):
        now = time.perf_counter() - t0
        if isinstance(item, Caption):
            if item.kind == "source" and item.final:
                source_captions.append(item)
            continue
        clause: Clause = item.translation.source
        rec = records.get(clause.clause_id)
        if rec is None:
            rec = records[clause.clause_id] = ClauseRecord(
                clause.clause_id,
                clause.text,
                clause.pts,
                clause.end,
                clause.words[0].end if clause.words else clause.pts,
            )
            rec.translation = item.translation.text
            rec.audio_ready = now
            if on_progress:
                on_progress(f"[{clause.pts:6.2f}s] {clause.text!r} -> {item.translation.text!r}")
        chunk = resample(item.audio.samples, item.audio.sample_rate, out_rate)
        audio.setdefault(clause.clause_id, []).append(chunk)
    wall = time.perf_counter() - t0
    ordered = [records[k] for k in sorted(records)]
    for rec in ordered:
        rec.output_end = sum(c.size for c in audio[rec.clause_id]) / out_rate  # duration, until place() runs
    place(ordered, realtime)
    for rec in ordered:
        engine.waterfall.placed(rec.clause_id, rec.output_start)
    total = max((r.output_end for r in ordered), default=0.0)
    timeline = np.zeros(int(np.ceil(total * out_rate)) + 1, np.float32)
    for rec in ordered:
        clip = np.concatenate(audio[rec.clause_id])
        start = int(round(rec.output_start * out_rate))
        timeline[start : start + clip.size] += clip[: timeline.size - start]
    voice = voice_summary(engine)
    return SpeechRun(
        np.clip(timeline, -1, 1), out_rate, ordered, engine.log, samples.size / ENGINE_RATE, wall, realtime,
        source_captions, voice, engine.waterfall.rows(),
        engine.critical.summary() if engine.critical is not None else {"enabled": False},
    )  # fmt: skip


def voice_summary(engine: SpeechEngine) -> dict[str, Any]:
    """When conversion started and what the enrolled profile holds, for the report."""
    vc = engine.vc
    if vc is None:
        return {"enabled": False}
    stats = vc.profile.stats
    return {
        "enabled": True,
        "profile_ready": vc.profile.ready,
        "events": [asdict(e) for e in vc.events],
        "speaker_f0_hz": stats.f0_hz if stats else None,
        "speaker_speech_seconds": stats.speech_seconds if stats else None,
        "chunks_converted": sum(e.converted for e in vc.events),
        "chunks_passed_through": sum(not e.converted for e in vc.events),
    }


def clause_count(records: list[ClauseRecord], rows: list[ClauseWaterfall]) -> dict[str, Any]:
    """Every clause the segmenter cut and whether its speech reached the output. The engine drops nothing on
    purpose; a clause without speech (a stage that lost it) is named here with the last stage it reached, so no
    loss is silent."""
    heard = {r.clause_id for r in records if r.output_start is not None}
    lost = [row for row in rows if row.clause_id not in heard]
    return {
        "cut": len(rows),
        "heard": len(heard),
        "dropped": len(lost),
        "dropped_clauses": [{"id": row.clause_id, "source": row.text, "reached": row.reached} for row in lost],
    }


def build_report(run: SpeechRun, config: SpeechConfig, input_path: str) -> dict[str, Any]:
    evs = [r.ear_voice_span for r in run.clauses if r.ear_voice_span is not None]
    summary = run.log.summary()
    return {
        "input": input_path,
        "source": config.source,
        "target": config.target,
        "mode": "realtime" if run.realtime else "fast",
        "audio_seconds": run.duration,
        "wall_seconds": run.wall,
        "transcript": " ".join(c.text for c in run.source_captions).strip(),
        "translation": " ".join(r.translation for r in run.clauses).strip(),
        "clause_count": clause_count(run.clauses, run.waterfall),
        "clauses": [
            {
                "id": r.clause_id,
                "source": r.source_text,
                "translation": r.translation,
                "source_start": r.source_start,
                "source_end": r.source_end,
                "audio_ready": r.audio_ready,
                "output_start": r.output_start,
                "output_end": r.output_end,
                "ear_voice_span": r.ear_voice_span,
            }
            for r in run.clauses
        ],
        "ear_voice_span": {
            "p50": float(np.percentile(evs, 50)) if evs else None,
            "p95": float(np.percentile(evs, 95)) if evs else None,
            "n": len(evs),
            "note": "live: translated audio start minus the end of the clause's first source word"
            if run.realtime
            else "computation-unaware: clauses placed at their source time; use --realtime for live figures",
        },
        "waterfall": {
            "clauses": [row.to_json() for row in run.waterfall],
            "stage_share": stage_shares(run.waterfall),
            "note": "seconds on the session clock; each interval is one stage's share of the ear-voice span"
            if run.realtime
            else "computation-unaware run: stage times are wall times of a run faster than real time",
        },
        "latency": summary,
        "real_time_factor": {stage: s["compute_total_s"] / run.duration for stage, s in summary.items()},
        "voice_conversion": run.voice,
        "tts_priority": run.tts_priority,
    }
