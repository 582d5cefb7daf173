"""Benchmark suites for ``rt-f2f bench``: one module per suite, each exposing ``SUITE`` (see ``common``)."""

SUITE_MODULES: dict[str, str] = {
    "asr": "benchmarks.suite_asr",
    "mt": "benchmarks.suite_mt",
    "tts": "benchmarks.suite_tts",
    "voice": "benchmarks.suite_voice",
    "lipsync": "benchmarks.suite_lipsync",
    "scheduler": "benchmarks.bench_scheduler",
    "speech": "benchmarks.suite_speech",
    "pipeline": "benchmarks.suite_pipeline",
    "simulst": "benchmarks.suite_simulst",
    "webrtc": "benchmarks.suite_webrtc",
    "webrtc-browser": "benchmarks.bench_webrtc_browser",
    "event": "benchmarks.bench_event",
}
