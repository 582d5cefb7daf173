"""Refusals the HTTP API turns into a JSON error with a 4xx status."""

from __future__ import annotations

from ..errors import RtF2fError


class ApiError(RtF2fError):
    """A request the server will not serve, with the HTTP status that says why (5xx only for capacity: 503)."""

    def __init__(self, status: int, message: str, hint: str = "", retry_after: int | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
        self.retry_after = retry_after  # seconds, sent as Retry-After (429, 503)

    def to_json(self) -> dict[str, str]:
        body = {"error": self.message}
        if self.hint:
            body["hint"] = self.hint
        return body
