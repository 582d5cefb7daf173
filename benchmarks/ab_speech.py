"""A/B of speech-engine settings, live, on one recording: variants take turns so machine load falls on all alike.

`rt-f2f bench --suite speech` compares the defaults with the engine as it was before the real-time work; this
compares the defaults with a candidate change (or any settings given), round after round, and pools each variant's
clauses. Use it to decide a default: one live run on 2 cores varies by +-30 % from round to round, so a single pair
of runs decides nothing.

    python -m benchmarks.ab_speech --rounds 3
    python -m benchmarks.ab_speech --rounds 3 --variant asr_margin_s=0.4 --variant pause_commit=false
    python -m benchmarks.ab_speech --rounds 3 --variant clauses.max_words=4,asr_step_s=0.75
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rt_f2f.speech import SpeechConfig, SpeechModels

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "en_sample.wav"
CANDIDATE = {"pause_commit": True, "asr_margin_s": 0.5}  # commits at pauses with a tighter margin (session 4)


def parse_setting(text: str) -> tuple[str, bool | float | int | str]:
    """``name=value`` for a scalar SpeechConfig field, or ``clauses.name=value`` for one of its ClauseConfig's, the
    value parsed as that field's type."""
    from rt_f2f.clauses import ClauseConfig
    from rt_f2f.speech import SpeechConfig

    name, _, raw = text.partition("=")
    owner, _, leaf = name.rpartition(".")
    holder = {"": SpeechConfig, "clauses": ClauseConfig}.get(owner)
    kinds = {f.name: f.type for f in fields(holder)} if holder else {}
    if leaf not in kinds or not raw:
        names = ", ".join(f.name for f in fields(SpeechConfig))
        raise SystemExit(
            f"ab_speech: '{text}' is not NAME=VALUE for a SpeechConfig field ({names}) or clauses.NAME=VALUE"
        )
    kind = kinds[leaf]
    if kind == "bool":
        return name, raw.lower() in ("1", "true", "yes", "on")
    if kind.startswith("float"):
        return name, float(raw)
    if kind.startswith("int"):
        return name, int(raw)
    return name, raw


def apply_settings(base: SpeechConfig, settings: dict[str, bool | float | int | str]) -> SpeechConfig:
    """``base`` with the settings of one variant (``clauses.`` names change its ClauseConfig)."""
    clauses = {k.partition(".")[2]: v for k, v in settings.items() if k.startswith("clauses.")}
    top = {k: v for k, v in settings.items() if not k.startswith("clauses.")}
    return replace(base, **top, **({"clauses": replace(base.clauses, **clauses)} if clauses else {}))


# the SpeechConfig fields load_models reads: variants that differ in one of these need models of their own
MODEL_FIELDS = ("source", "target", "asr_model", "mt_model", "tts_backend", "voice_conversion")


class VariantModels:
    """Loaded models per distinct model setting, so variants that differ only in policy share one load (and one
    warm-up) while a variant naming another voice or recogniser is measured with it, not with the defaults'."""

    def __init__(
        self, load: Callable[[SpeechConfig], SpeechModels], warm: Callable[[SpeechConfig, SpeechModels], None]
    ) -> None:
        self.load = load
        self.warm = warm  # one-time costs (model warm-up, caches) are paid before any measured run
        self.loaded: dict[tuple, SpeechModels] = {}

    def __call__(self, config: SpeechConfig) -> SpeechModels:
        key = tuple(getattr(config, name) for name in MODEL_FIELDS)
        if key not in self.loaded:
            self.loaded[key] = self.load(config)
            self.warm(config, self.loaded[key])
        return self.loaded[key]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--variant", action="append", default=[], help="NAME=VALUE[,NAME=VALUE...] against the defaults (repeat)"
    )
    parser.add_argument("--out", type=Path, help="write every run's figures as JSON")
    args = parser.parse_args(argv)

    from benchmarks.simulst import translation_quality
    from rt_f2f.audio import read_audio
    from rt_f2f.rates import ENGINE_RATE
    from rt_f2f.recording import build_report, translate_recording
    from rt_f2f.speech import SpeechConfig, SpeechEngine, load_models
    from rt_f2f.waterfall import stage_shares

    samples = read_audio(SAMPLE, ENGINE_RATE)
    reference = " ".join(SAMPLE.with_suffix(".pt.txt").read_text().split())
    base = SpeechConfig(source="en", target="pt")
    variants = {"defaults": base}
    changes = [dict(parse_setting(part) for part in v.split(",")) for v in args.variant] or [CANDIDATE]
    for change in changes:
        variants[", ".join(f"{k}={v}" for k, v in change.items())] = apply_settings(base, change)
    warm = samples[: ENGINE_RATE * 2]
    models = VariantModels(
        load_models,
        lambda config, loaded: asyncio.run(translate_recording(SpeechEngine(config, loaded), warm, realtime=False)),
    )
    for config in variants.values():
        models(config)
    runs: list[dict] = []
    for round_ in range(args.rounds):
        for label, config in variants.items():
            load = os.getloadavg()[0]
            live = asyncio.run(translate_recording(SpeechEngine(config, models(config)), samples, realtime=True))
            report = build_report(live, config, str(SAMPLE))
            spans = [c.ear_voice_span for c in live.clauses if c.ear_voice_span is not None]
            run = {
                "round": round_,
                "variant": label,
                "load1": round(load, 2),
                "spans": spans,
                "chrf": translation_quality(report["translation"].lower(), reference)["chrf"],
                "shares_p50": {k: round(v["p50"], 3) for k, v in stage_shares(live.waterfall).items()},
                "tts_priority": live.tts_priority,
            }
            runs.append(run)
            p50 = float(np.median(spans)) if spans else float("nan")
            held = live.tts_priority
            deferred = (
                f", ASR steps deferred {held['asr_steps_deferred']} ({held['asr_waited_s']:.1f} s)"
                if held.get("enabled")
                else ""
            )
            print(
                f"round {round_} {label}: EVS p50 {p50:.2f} s over {len(spans)} clauses, load {load:.2f}{deferred}",
                flush=True,
            )
    print("\nvariant | EVS p50 | EVS p95 | clauses | chrF | load (1 min)")
    for label in variants:
        mine = [r for r in runs if r["variant"] == label]
        spans = [s for r in mine for s in r["spans"]]
        loads = [r["load1"] for r in mine]
        print(
            f"{label} | {np.median(spans):.2f} s | {np.percentile(spans, 95):.2f} s | {len(spans)} | "
            f"{np.mean([r['chrf'] for r in mine]):.1f} | {min(loads):.1f}-{max(loads):.1f}"
        )
    if args.out:
        args.out.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
