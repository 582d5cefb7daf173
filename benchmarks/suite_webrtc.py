"""WebRTC suite: mouth-to-ear delay through the call server, translated against passthrough in the same run.

The measurement lives with the server's own benchmark (``benchmarks/bench_webrtc.py``, which also runs as a
script); this module is the ``rt-f2f bench`` entry for it, and says why when it cannot run: the server package or
its benchmark not being built yet, or aiortc missing.
"""

from __future__ import annotations

import importlib
import importlib.util

from benchmarks.common import BenchContext, Suite, SuiteResult, skipped


def run(ctx: BenchContext) -> SuiteResult:
    for module, what in (
        ("aiortc", "aiortc is not installed (pip install aiortc)"),
        ("rt_f2f.server", "the call server (rt_f2f/server) is not built"),
        ("benchmarks.bench_webrtc", "the WebRTC benchmark (benchmarks/bench_webrtc.py) is not built"),
    ):
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            return skipped("webrtc", what)
    try:
        bench = importlib.import_module("benchmarks.bench_webrtc")
    except ImportError as exc:
        return skipped("webrtc", f"benchmarks/bench_webrtc.py does not import: {exc}")
    suite = getattr(bench, "SUITE", None)
    if suite is None or not callable(getattr(suite, "run", None)):
        return skipped("webrtc", "benchmarks/bench_webrtc.py exposes no SUITE to run")
    result = suite.run(ctx)
    result.suite = "webrtc"
    return result


SUITE = Suite("webrtc", "mouth-to-ear delay through the WebRTC call server, translated vs passthrough", run)
