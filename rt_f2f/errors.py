"""Errors a user can act on.

Every error that reaches the command line is an ``RtF2fError``: one line saying what is wrong and one saying what
to do next. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class RtF2fError(Exception):
    """An error with a message for the user and a hint on what to do next."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class MediaError(RtF2fError):
    """Unreadable, corrupt, empty or too-short media."""


class LanguageError(RtF2fError):
    """An unknown language code or an unsupported language pair."""


class ModelMissingError(RtF2fError):
    """A model is not on disk and cannot be fetched here."""


class ModelFormatError(RtF2fError):
    """A model file exists but is not what it claims to be (wrong keys, shapes or layout)."""


class BackendUnavailableError(RtF2fError):
    """A compute backend was asked for whose packages do not import on this machine."""
