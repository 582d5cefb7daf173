"""The wheel, not just the checkout: a non-editable install must carry every package and the browser client."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "results", "out")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"  # a copy: building in place would leave build/ and *.egg-info in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*SKIP))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("rt_f2f-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed into a folder of its own (put it on PYTHONPATH to import from there)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    return target


def test_wheel_holds_every_package_and_the_web_client(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for top in ("rt_f2f", "engines"):
        for init in (ROOT / top).rglob("__init__.py"):
            assert init.relative_to(ROOT).as_posix() in names, f"{init.parent} is missing from pyproject's packages"
    for asset in ("index.html", "app.js", "style.css"):
        assert f"rt_f2f/web/{asset}" in names
    assert not any(name.startswith("benchmarks/") for name in names), "benchmarks must not be a top-level package"


@pytest.mark.parametrize("in_checkout", [True, False])
def test_installed_bench_finds_the_suites_of_the_checkout_it_runs_in(installed: Path, tmp_path: Path, in_checkout):
    # -P: the working folder is not put on sys.path, as for the installed rt-f2f script, so rt_f2f comes from the wheel
    probe = "import rt_f2f; print(rt_f2f.__file__); from rt_f2f.cli import main; main(['bench', '--help'])"
    env = {**os.environ, "PYTHONPATH": str(installed), "COLUMNS": "400"}
    done = subprocess.run(
        [sys.executable, "-P", "-c", probe],
        cwd=ROOT if in_checkout else tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    package, help_text = done.stdout.split("\n", 1)
    assert Path(package).is_relative_to(installed)
    if in_checkout:
        assert "(asr, mt, tts" in help_text, help_text
    else:
        assert "none here: run in the root of an rt-f2f checkout" in " ".join(help_text.split())


def test_installed_server_serves_the_packaged_client(installed: Path, tmp_path: Path) -> None:
    target = installed
    probe = "from rt_f2f.server.app import DEFAULT_WEB_DIR as d; print(d); print((d / 'index.html').read_text()[:15])"
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
    )
    web_dir, head = done.stdout.splitlines()[:2]
    assert Path(web_dir).is_relative_to(target)
    assert head.lower().startswith("<!doctype html")
