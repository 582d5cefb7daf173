"""``rt-f2f --help`` and every subcommand's ``--help`` stay instant: building the parser imports no heavy library.

Speed is checked by what gets imported (in a fresh interpreter), not by a wall-clock limit: torch, scipy, cv2 and
the model runtimes cost seconds to import and belong inside the commands' ``run``; numpy and asyncio cost a tenth of
a second, a third of the 0.3 s a ``--help`` may take. Also: every command that takes a
lip-sync backend offers the same names, and ``bench --help`` lists the suites.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rt_f2f.cli import build_parser
from rt_f2f.lipsync.names import BACKEND_NAMES

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "scipy", "cv2", "mediapipe", "onnxruntime", "ctranslate2", "faster_whisper", "av", "aiortc",
         "aiohttp", "matplotlib", "soundfile", "piper", "kokoro_onnx", "pyworld", "sentencepiece",
         "numpy", "asyncio")  # fmt: skip  # numpy and asyncio alone cost more than the rest of a --help

PROBE = """
import contextlib, io, json, sys
from rt_f2f.cli import main
commands = [[]] + [[c] for c in sys.argv[1:]]
for command in commands:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(command + ["--help"])
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def subcommands() -> list[str]:
    (action,) = [a for a in build_parser()._actions if a.dest == "command"]
    return sorted(action.choices)


def option(command: str, flag: str):
    """The argparse action of ``flag`` in ``rt-f2f COMMAND``."""
    (subparsers,) = [a for a in build_parser()._actions if a.dest == "command"]
    (action,) = [a for a in subparsers.choices[command]._actions if flag in a.option_strings]
    return action


def test_every_help_imports_no_heavy_library():
    commands = subcommands()
    assert {"speech", "translate", "lipsync", "serve", "bench", "models"} <= set(commands)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *commands], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "rt_f2f" in loaded, "the probe did not import the CLI"
    assert sorted(loaded & set(HEAVY)) == []


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        ("translate", "--backend"),
        ("lipsync", "--backend"),
        ("serve", "--lipsync-backend"),
        ("camera", "--lipsync-backend"),
    ],
)
def test_commands_offer_the_same_lipsync_backends(command, flag, capsys):
    assert tuple(option(command, flag).choices) == BACKEND_NAMES
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    listed = "".join(capsys.readouterr().out.split())  # argparse wraps the {a,b,c} list wherever it likes
    assert "{" + ",".join(BACKEND_NAMES) + "}" in listed


def test_backend_names_match_the_backend_registry():
    from rt_f2f.lipsync.backends import BACKENDS

    assert set(BACKEND_NAMES) == set(BACKENDS)


def test_bench_help_lists_every_suite():
    from benchmarks import SUITE_MODULES

    listed = option("bench", "--suite").help
    assert all(name in listed for name in SUITE_MODULES)
