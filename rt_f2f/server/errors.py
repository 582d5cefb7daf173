"""Refusals the HTTP API turns into a JSON error with a 4xx status."""

from __future__ import annotations

from ..errors import RtF2fError


class ApiError(RtF2fError):
    """A request the server will not serve, with the HTTP status that says why (never 5xx: those are bugs)."""

    def __init__(self, status: int, message: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.status = status

    def to_json(self) -> dict[str, str]:
        body = {"error": self.message}
        if self.hint:
            body["hint"] = self.hint
        return body
