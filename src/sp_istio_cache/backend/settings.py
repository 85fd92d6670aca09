"""The backend's defaults and the check of its key; imported by the command line before
``prometheus_client`` may be (see :mod:`.metrics` on multiprocess mode), so it imports nothing
heavy."""

from __future__ import annotations

#: 16 MiB: an 8 MiB body (the largest max_response_body_bytes) plus headers (docs/protocol.md)
DEFAULT_MAX_BODY = 16 * 1024 * 1024
#: stores are kept at most 30 days, whatever sp.cache.retain_seconds says
DEFAULT_MAX_RETAIN_S = 30 * 24 * 3600
#: the environment variable holding the backend key (the filter reads the same name by default)
KEY_ENV = "SP_CACHE_BACKEND_KEY"
#: the request header carrying the key (docs/protocol.md "Transport")
KEY_HEADER = "x-public-key"
#: paths served without the key: probes and scrapes
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def check_key(key: str) -> str:
    """Return ``key`` when it can be a backend key: 16..256 visible ASCII characters (it travels
    as an HTTP header value; 256 is the filter's ``backend_key`` limit).

    Raises:
        ValueError: naming what is wrong (never echoing the key).
    """
    if not 16 <= len(key) <= 256:
        raise ValueError(f"the backend key must be 16..256 characters long, got {len(key)}")
    if not all(0x21 <= ord(c) <= 0x7E for c in key):
        raise ValueError("the backend key must be visible ASCII (no spaces or control characters)")
    return key
