"""The TensorRT build path's checks, on a CPU: input validation before anything heavy, a clear error when tensorrt is
missing, the cache key, and the builder's calls and atomic write, against a stand-in for the tensorrt module (the
real one needs an NVIDIA driver; the GPU test in test_lipsync_backends.py runs it where one exists)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from rt_f2f.errors import BackendUnavailableError, ModelFormatError, RtF2fError
from rt_f2f.lipsync import tensorrt_engine


class FakeTrt(types.ModuleType):
    """Records what the builder is asked for; ``parse_ok`` / ``build_ok`` choose the outcome."""

    __version__ = "10.99.0"

    def __init__(self, parse_ok: bool = True, build_ok: bool = True) -> None:
        super().__init__("tensorrt")
        self.parse_ok, self.build_ok = parse_ok, build_ok
        self.flags: list[str] = []
        self.profile: dict[str, tuple] = {}
        self.workspace: int | None = None
        fake = self

        class Logger:
            WARNING = 2

            def __init__(self, level: int) -> None:
                self.level = level

        class BuilderFlag:
            FP16, BF16 = "FP16", "BF16"

        class MemoryPoolType:
            WORKSPACE = "WORKSPACE"

        class Config:
            def set_memory_pool_limit(self, pool: str, size: int) -> None:
                fake.workspace = size

            def set_flag(self, flag: str) -> None:
                fake.flags.append(flag)

            def add_optimization_profile(self, profile: object) -> None:
                pass

        class Profile:
            def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
                fake.profile[name] = (lo, opt, hi)

        class Builder:
            def __init__(self, logger: Logger) -> None:
                pass

            def create_network(self, flags: int) -> object:
                return object()

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: object, config: Config) -> bytes | None:
                return b"serialised engine" if fake.build_ok else None

        class OnnxParser:
            num_errors = 1

            def __init__(self, network: object, logger: Logger) -> None:
                pass

            def parse_from_file(self, path: str) -> bool:
                return fake.parse_ok

            def get_error(self, i: int) -> str:
                return "node 7: unsupported operator"

        self.Logger, self.BuilderFlag, self.MemoryPoolType = Logger, BuilderFlag, MemoryPoolType
        self.Builder, self.OnnxParser = Builder, OnnxParser


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "wav2lip.onnx"
    path.write_bytes(b"not really onnx, but the builder only hands the path to the parser")
    return path


def install(monkeypatch: pytest.MonkeyPatch, fake: types.ModuleType | None) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", fake)  # None makes `import tensorrt` raise ImportError


def test_bad_precision_and_batch_profile_are_refused_before_tensorrt_is_needed(monkeypatch, onnx_file, tmp_path):
    install(monkeypatch, None)
    with pytest.raises(RtF2fError, match="unknown TensorRT precision 'int4'"):
        tensorrt_engine.build_engine(onnx_file, tmp_path / "e.engine", precision="int4")
    for batch in ((0, 1, 1), (4, 2, 8), (1, 8, 4)):
        with pytest.raises(RtF2fError, match="1 <= min <= opt <= max"):
            tensorrt_engine.build_engine(onnx_file, tmp_path / "e.engine", batch=batch)


def test_missing_tensorrt_is_one_clear_error_with_what_to_do(monkeypatch, onnx_file, tmp_path):
    install(monkeypatch, None)
    with pytest.raises(BackendUnavailableError) as err:
        tensorrt_engine.build_engine(onnx_file, tmp_path / "e.engine")
    assert "tensorrt does not import" in err.value.message and "rt-f2f[gpu]" in err.value.hint
    assert not (tmp_path / "e.engine").exists()


@pytest.mark.parametrize(("precision", "flags"), [("fp16", ["FP16"]), ("bf16", ["BF16"]), ("fp32", [])])
def test_the_builder_gets_the_precision_profile_and_workspace_and_writes_atomically(
    monkeypatch, onnx_file, tmp_path, precision, flags
):
    fake = FakeTrt()
    install(monkeypatch, fake)
    out = tmp_path / "engines" / "w.engine"
    path = tensorrt_engine.build_engine(onnx_file, out, precision=precision, batch=(2, 8, 16), workspace_gib=1.5)
    assert path == out and out.read_bytes() == b"serialised engine"
    assert fake.flags == flags and fake.workspace == int(1.5 * (1 << 30))
    assert fake.profile == {
        "mel": ((2, 1, 80, 16), (8, 1, 80, 16), (16, 1, 80, 16)),
        "faces": ((2, 6, 96, 96), (8, 6, 96, 96), (16, 6, 96, 96)),
    }
    assert sorted(p.name for p in out.parent.iterdir()) == ["w.engine"]  # no partial file left behind


def test_an_unparsable_export_names_the_parser_errors(monkeypatch, onnx_file, tmp_path):
    install(monkeypatch, FakeTrt(parse_ok=False))
    with pytest.raises(ModelFormatError, match="node 7: unsupported operator"):
        tensorrt_engine.build_engine(onnx_file, tmp_path / "e.engine")


def test_a_failed_build_leaves_no_engine(monkeypatch, onnx_file, tmp_path):
    install(monkeypatch, FakeTrt(build_ok=False))
    with pytest.raises(RtF2fError, match="failed to build"):
        tensorrt_engine.build_engine(onnx_file, tmp_path / "e.engine")
    assert list(tmp_path.glob("e.engine*")) == []


def test_the_cache_path_follows_the_export_gpu_and_tensorrt_version(monkeypatch, onnx_file, tmp_path):
    install(monkeypatch, FakeTrt())
    monkeypatch.setattr(tensorrt_engine, "gpu_identity", lambda device=0: "NVIDIA H200 sm_90")
    first = tensorrt_engine.engine_cache_path(onnx_file, tmp_path, "fp16", (1, 8, 32))
    assert first.parent == tmp_path and "nvidia-h200-sm-90" in first.name and "trt10.99.0-fp16-b1-32" in first.name
    assert tensorrt_engine.engine_cache_path(onnx_file, tmp_path, "fp16", (1, 8, 32)) == first  # stable
    onnx_file.write_bytes(b"another export")
    assert tensorrt_engine.engine_cache_path(onnx_file, tmp_path, "fp16", (1, 8, 32)) != first
    monkeypatch.setattr(tensorrt_engine, "gpu_identity", lambda device=0: "NVIDIA L4 sm_89")
    assert "nvidia-l4-sm-89" in tensorrt_engine.engine_cache_path(onnx_file, tmp_path).name


def test_a_cached_engine_is_reused_without_building(monkeypatch, onnx_file, tmp_path):
    install(monkeypatch, FakeTrt())
    monkeypatch.setattr(tensorrt_engine, "gpu_identity", lambda device=0: "NVIDIA H200 sm_90")
    cached = tensorrt_engine.engine_cache_path(onnx_file, tmp_path)
    cached.write_bytes(b"built earlier")

    def no_build(*args: object, **kwargs: object) -> Path:
        raise AssertionError("a cached engine was rebuilt")

    monkeypatch.setattr(tensorrt_engine, "build_engine", no_build)
    assert tensorrt_engine.ensure_engine(onnx_file, tmp_path) == cached


def test_no_cuda_device_is_a_clear_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        tensorrt_engine.gpu_identity()
