"""A tiny blocking HTTP client for checks through the listener (smoke, tests).

Returns every header value in order, which ``urllib``'s message object keeps.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """One HTTP exchange as the client saw it. ``headers`` are (lower-case name, value) pairs in order."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), else None."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` in order."""
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    @property
    def cache(self) -> str | None:
        """The ``x-sp-cache`` outcome: HIT, MISS, BYPASS, or None when the filter was not there."""
        return self.header("x-sp-cache")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None,
            body: bytes | None = None, timeout_s: float = 30.0) -> Reply:
    """Send one request; HTTP error statuses are returned as a Reply, not raised.

    Raises:
        urllib.error.URLError / OSError: connection failures.
    """
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return Reply(r.status, [(k.lower(), v) for k, v in r.headers.items()], r.read())
    except urllib.error.HTTPError as e:
        with e:
            return Reply(e.code, [(k.lower(), v) for k, v in e.headers.items()], e.read())
