"""Output paths checked before any work: every command calls ``check_outputs`` first.

A run that takes minutes must not end in a traceback because ``--out`` names a directory, sits under a regular
file or in a read-only folder, and one output must not be written when another cannot be (``speech --report`` to
an unwritable path used to fail after the WAV was written). The checks create nothing: writability is probed with
a temporary file in the nearest existing folder, which is removed at once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import RtF2fError


class OutputError(RtF2fError):
    """An output path that cannot be written."""


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(".")


def check_output(flag: str, path: str | os.PathLike, *, folder: bool = False) -> Path:
    """The path, once it is known that ``flag`` can be written there (as a file, or a folder with ``folder``)."""
    target = Path(path)
    if not str(path).strip():
        raise OutputError(f"{flag} is empty", f"give {flag} a file name")
    if target.is_dir() and not folder:
        raise OutputError(f"{flag} {target} is a directory", f"give a file name inside it, e.g. {target}/NAME")
    if target.exists() and not target.is_dir() and folder:
        raise OutputError(f"{flag} {target} is a file, not a folder", "give a new or existing folder")
    existing = _nearest_existing(target if folder and target.is_dir() else target.parent)
    if not existing.is_dir():
        raise OutputError(
            f"{flag} {target}: {existing} is a file, not a folder", "choose a path whose folders are folders"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".rt-f2f-probe-", dir=existing)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(
            f"{flag} {target}: cannot write in {existing} ({reason})", "choose a folder you can write to"
        ) from exc
    os.close(fd)
    os.unlink(probe)
    return target


def check_outputs(*outputs: tuple[str, str | os.PathLike | None]) -> None:
    """Check each (flag, path) given (None: not asked for), and that no two name the same file."""
    seen: dict[Path, str] = {}
    for flag, path in outputs:
        if path is None:
            continue
        resolved = check_output(flag, path).resolve()
        if resolved in seen:
            raise OutputError(f"{seen[resolved]} and {flag} name the same file {path}", "give each its own path")
        seen[resolved] = flag
