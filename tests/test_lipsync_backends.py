"""Lip-sync backends agree with each other, validate their inputs, and report what is unavailable.

All weights here are random (tests/lipsync_fixtures.py): agreement between backends is what is tested, never
lip-sync quality.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnx
import pytest
import torch
from lipsync_fixtures import shared_checkpoint, shared_engine_cache, write_random_checkpoint

from engines import export_onnx, tensorrt_build
from rt_f2f.errors import BackendUnavailableError, MediaError, ModelFormatError, RtF2fError
from rt_f2f.lipsync import onnx_export, tensorrt_engine
from rt_f2f.lipsync.backends import available_backends, cpu_has_native_bf16, default_backend, load_backend
from rt_f2f.lipsync.checkpoint import load_wav2lip

FP32_TOLERANCE = 1e-4  # torch eager vs ONNX Runtime, both fp32: only summation order differs
BF16_TOLERANCE = 0.05  # bf16 keeps 8 mantissa bits through ~45 layers: measured max ~0.023, mean ~0.002


def _inputs(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mel = rng.uniform(-4, 4, (batch, 1, 80, 16)).astype(np.float32)
    faces = rng.uniform(0, 1, (batch, 6, 96, 96)).astype(np.float32)
    faces[:, :3, 48:] = 0  # the target's lower half is masked, as the pipeline feeds it
    return mel, faces


@pytest.fixture(scope="module")
def checkpoint():
    return shared_checkpoint("wav2lip")


@pytest.fixture(scope="module")
def torch_backend(checkpoint):
    return load_backend("torch", checkpoint, device="cpu")


@pytest.fixture(scope="module")
def ort_backend(checkpoint):
    return load_backend("onnxruntime", checkpoint, cache_dir=shared_engine_cache())


def test_available_backends_here():
    names = available_backends()
    assert {"torch", "onnxruntime"} <= set(names)
    has_trt = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
    assert ("tensorrt" in names) == has_trt
    assert ("torch-bf16" in names) == cpu_has_native_bf16()
    assert default_backend() in names


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available(),
    reason="TensorRT and a GPU are present: the unavailable path cannot be observed",
)
def test_tensorrt_unavailable_is_a_clear_error(checkpoint):
    with pytest.raises(BackendUnavailableError, match="tensorrt lip-sync backend is unavailable") as err:
        load_backend("tensorrt", checkpoint)
    assert "onnxruntime" in err.value.hint
    assert tensorrt_build.main([str(checkpoint)]) == 2


def test_unknown_backend_and_option(checkpoint):
    with pytest.raises(BackendUnavailableError, match="unknown lip-sync backend 'openvino'") as err:
        load_backend("openvino", checkpoint)
    assert "torch" in err.value.hint
    with pytest.raises(RtF2fError, match="does not take that option"):
        load_backend("torch", checkpoint, warp_speed=True)


def test_torch_backend_equals_the_model(checkpoint, torch_backend):
    mel, faces = _inputs(3)
    with torch.inference_mode():
        expected = load_wav2lip(checkpoint)(torch.from_numpy(mel), torch.from_numpy(faces)).numpy()
    out = torch_backend.infer(mel, faces)
    assert out.shape == (3, 3, 96, 96) and out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    assert torch_backend.name == "torch" and torch_backend.max_batch >= 1


@pytest.mark.parametrize("batch", [1, 4])
def test_onnxruntime_matches_torch(batch, torch_backend, ort_backend):
    mel, faces = _inputs(batch, seed=batch)
    a = torch_backend.infer(mel, faces)
    b = ort_backend.infer(mel, faces)
    assert b.shape == (batch, 3, 96, 96) and b.dtype == np.float32
    assert 0 <= b.min() and b.max() <= 1
    assert a.std() > 0.05  # random weights chosen so outputs spread; a flat 0.5 image would make parity vacuous
    assert float(np.abs(a - b).max()) < FP32_TOLERANCE


def test_large_batches_are_split_and_empty_batches_work(checkpoint, torch_backend):
    small = load_backend("torch", checkpoint, max_batch=2)
    mel, faces = _inputs(5, seed=9)
    np.testing.assert_allclose(small.infer(mel, faces), torch_backend.infer(mel, faces), atol=1e-5)
    assert small.infer(mel[:0], faces[:0]).shape == (0, 3, 96, 96)


def test_bad_inputs_are_refused(ort_backend):
    mel, faces = _inputs(2)
    with pytest.raises(MediaError, match=r"\[0, 1\]") as err:
        ort_backend.infer(mel, faces * 255)
    assert "255" in err.value.hint
    with pytest.raises(MediaError, match=r"\(B, 6, 96, 96\)"):
        ort_backend.infer(mel, faces[:, :3])
    with pytest.raises(MediaError, match=r"\(B, 1, 80, 16\)"):
        ort_backend.infer(mel[:, 0], faces)
    with pytest.raises(MediaError, match="differ in size"):
        ort_backend.infer(mel[:1], faces)
    bad = mel.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(MediaError, match="NaN"):
        ort_backend.infer(bad, faces)


def test_onnx_export_has_a_dynamic_batch_axis_and_is_cached(checkpoint, ort_backend):
    path = ort_backend.onnx_path
    assert path == onnx_export.onnx_cache_path(checkpoint, shared_engine_cache())
    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    before = path.stat().st_mtime_ns
    assert onnx_export.ensure_onnx(checkpoint, shared_engine_cache()) == path  # second use: no re-export
    assert path.stat().st_mtime_ns == before


def test_cache_key_follows_the_checkpoint_bytes(tmp_path, checkpoint):
    other = write_random_checkpoint(tmp_path / "other.pth", "wav2lip", seed=1)
    assert onnx_export.onnx_cache_path(other, tmp_path) != onnx_export.onnx_cache_path(checkpoint, tmp_path)
    assert onnx_export.onnx_cache_path(checkpoint, tmp_path).name.startswith("wav2lip-")


def test_given_onnx_file_is_used_as_is(ort_backend, tmp_path):
    copy = tmp_path / "mine.onnx"
    copy.write_bytes(ort_backend.onnx_path.read_bytes())
    backend = load_backend("onnxruntime", None, onnx_path=copy, threads=1)
    mel, faces = _inputs(2, seed=4)
    np.testing.assert_array_equal(backend.infer(mel, faces), ort_backend.infer(mel, faces))
    with pytest.raises(RtF2fError, match="not found"):
        load_backend("onnxruntime", None, onnx_path=tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelFormatError, match="cannot load"):
        load_backend("onnxruntime", None, onnx_path=junk)
    with pytest.raises(RtF2fError, match="max_batch"):
        load_backend("onnxruntime", None, onnx_path=copy, max_batch=0)


def test_export_cli_writes_a_checked_model(checkpoint, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert export_onnx.main([str(checkpoint), "--out", str(out), "--opset", "18"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    model = onnx.load(str(out), load_external_data=False)
    assert any(o.version == 18 for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert export_onnx.main([str(tmp_path / "absent.pth")]) == 2


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16 (AVX512-BF16 / AMX)")
def test_torch_bf16_on_cpu_stays_close(checkpoint, torch_backend):
    backend = load_backend("torch-bf16", checkpoint)
    assert backend.name == "torch-bf16" and backend.device.type == "cpu"
    mel, faces = _inputs(2, seed=8)
    out = backend.infer(mel, faces)
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    diff = np.abs(out - torch_backend.infer(mel, faces))
    assert 0 < float(diff.max()) < BF16_TOLERANCE  # nonzero: it really ran in bf16
    assert float(diff.mean()) < BF16_TOLERANCE / 10


def test_fp16_on_cpu_is_refused(checkpoint):
    with pytest.raises(RtF2fError, match="fp16 is only offered on CUDA"):
        load_backend("torch", checkpoint, device="cpu", precision="fp16")


def test_engine_cache_key_separates_what_an_engine_depends_on():
    base = ("ab" * 32, "NVIDIA H100 80GB HBM3 sm_90", "10.3.0", "fp16", (1, 8, 32))
    key = tensorrt_engine.engine_key(*base)
    assert key.endswith(".engine") and "/" not in key and " " not in key
    variants = [
        ("cd" * 32, *base[1:]),
        (base[0], "NVIDIA L4 sm_89", *base[2:]),
        (*base[:2], "10.4.0", *base[3:]),
        (*base[:3], "bf16", base[4]),
        (*base[:4], (1, 8, 64)),
    ]
    assert len({key, *(tensorrt_engine.engine_key(*v) for v in variants)}) == 6
    with pytest.raises(RtF2fError, match="min <= opt <= max"):
        tensorrt_engine.check_batch((4, 2, 8))


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available(),
    reason="needs the tensorrt package and an NVIDIA GPU (pip install 'rt-f2f[gpu]'); neither exists on CPU machines",
)
def test_tensorrt_fp16_matches_torch(checkpoint, torch_backend):
    backend = load_backend("tensorrt", checkpoint, cache_dir=shared_engine_cache(), opt_batch=4, max_batch=8)
    for batch in (1, 4, 8):
        mel, faces = _inputs(batch, seed=batch)
        out = backend.infer(mel, faces)
        assert out.shape == (batch, 3, 96, 96)
        assert float(np.abs(out - torch_backend.infer(mel, faces)).max()) < 0.02  # fp16 inside the engine


def test_benchmark_writes_its_report(checkpoint, tmp_path, capsys):
    """The benchmark's plumbing (not its numbers): every requested point is measured and written."""
    from benchmarks import bench_lipsync

    out = tmp_path / "bench.json"
    args = ["--checkpoint", str(checkpoint), "--backends", "torch,onnxruntime", "--batch-sizes", "1"]
    args += ["--cache-dir", str(shared_engine_cache()), "--seconds", "0", "--no-baseline", "--out", str(out)]
    assert bench_lipsync.main(args) == 0
    report = json.loads(out.read_text())
    assert [(r["backend"], r["batch"]) for r in report["results"]] == [("torch", 1), ("onnxruntime", 1)]
    assert all(r["fps"] > 0 and r["calls"] >= 3 for r in report["results"])
    assert report["parity"]["torch"]["max_abs"] < FP32_TOLERANCE
    assert report["parity"]["onnxruntime"]["max_abs"] < FP32_TOLERANCE
    assert "onnxruntime" in capsys.readouterr().out
