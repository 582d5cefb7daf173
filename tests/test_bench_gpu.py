"""The GPU benchmark script, as far as a CPU takes it: its plan, its stream drivers' accounting, its refusals, and
(slow) the whole run end to end with ``--device cpu --quick`` in a fresh process, as the GPU machine would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gpu import bench_gpu
from rt_f2f.bench import validate
from rt_f2f.lipsync.costmodel import CostModel

ROOT = Path(__file__).resolve().parents[1]


class FastGenerator:
    name, max_batch = "fast", 8

    def infer(self, mel: np.ndarray, faces: np.ndarray) -> np.ndarray:
        return faces[:, :3].copy()


def cost() -> CostModel:
    model = CostModel()
    model.observe(1, 0.001)
    model.observe(8, 0.002)
    return model


def test_the_cuda_plan_covers_what_the_issue_asks_for():
    plan = bench_gpu.make_plan("cuda", quick=False, budget_s=420)
    assert set(plan.precisions) == {"fp32", "fp16", "bf16"} and "channels_last" in plan.layouts
    assert min(plan.batches) == 1 and max(plan.batches) == 128
    assert plan.graphs and plan.compile_batches
    assert max(plan.stream_counts) >= 100 and plan.speakers[0] == 1


def test_synthetic_streams_account_for_every_frame():
    run = bench_gpu.synthetic_streams(FastGenerator(), n=3, seconds=0.4, max_batch=8, cost=cost())
    assert run.frames == 3 * 10
    assert run.rendered + run.skipped == run.frames
    assert len(run.lags) == run.rendered and all(lag >= 0 for lag in run.lags)


def test_full_streams_put_every_frame_out_rendered_or_skipped():
    run = bench_gpu.full_streams(FastGenerator(), n=2, seconds=0.4, max_batch=8, cost=cost(), workers=1, give_up_s=120)
    assert run.frames == 2 * 10
    assert run.rendered + run.skipped == run.frames
    assert len(run.lags) == run.frames  # every frame came out of its stream


def test_a_stream_count_is_held_only_under_both_limits():
    ok = bench_gpu.StreamRun(4, 100, 100, 0, [0.05] * 100, 8.0, 0.0)
    assert ok.held
    assert not bench_gpu.StreamRun(4, 100, 98, 2, [0.05] * 98, 8.0, 0.0).held  # 2 % skipped
    assert not bench_gpu.StreamRun(4, 100, 100, 0, [0.2] * 100, 8.0, 0.0).held  # lag p95 200 ms


def test_the_speech_chain_on_cuda_names_what_is_missing():
    missing = bench_gpu.speech_missing("cuda")
    assert missing, "this machine has no CUDA device, so something must be missing"
    assert any("CUDA" in m or "package" in m for m in missing)


def test_asking_for_cuda_without_a_gpu_is_a_one_line_error(capsys):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert bench_gpu.main(["--device", "cuda", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--device cpu" in err


def test_run_sh_is_valid_bash():
    script = ROOT / "benchmarks" / "gpu" / "run.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.slow
def test_the_whole_gpu_bench_runs_on_a_cpu(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu.bench_gpu", "--device", "cpu", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    assert validate(report) == []
    suites = {s["suite"]: s for s in report["suites"]}
    assert set(suites) == {"gpu-generator", "gpu-streams", "gpu-speech"}
    assert suites["gpu-generator"]["status"] == "ok" and suites["gpu-streams"]["status"] == "ok"
    figures = {f["name"]: f["value"] for f in suites["gpu-generator"]["figures"]}
    assert figures["generator fps, eager fp32 contiguous, batch 1"] > 0
    streams = {f["name"]: f for f in suites["gpu-streams"]["figures"]}
    assert "concurrent 25-fps streams held, shared generator (synthetic streams)" in streams
    assert "synthetic streams, 1 streams: skipped" in streams
    speech = suites["gpu-speech"]
    assert speech["status"] == "ok" or speech["reason"].startswith("not on this machine")
    if speech["status"] == "ok":
        assert any(f["name"].startswith("ear-voice span, 1 speaker") for f in speech["figures"])
    markdown = (out / "report.md").read_text()
    assert "## gpu-generator (ok" in markdown and "## gpu-streams (ok" in markdown
