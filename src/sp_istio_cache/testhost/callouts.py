"""HTTP callouts (``proxy_http_call``) as Envoy makes and answers them, and a client that sends
them to a real process.

Envoy (``Context::httpCall``, ``onHttpCallSuccess``/``onHttpCallFailure``, the async client's router):

- every call belongs to the ROOT context and its answer arrives as
  ``proxy_on_http_call_response(root_id, token, headers, body_size, trailers)``; tokens step by 4
  per VM (4, 8, 12, ...);
- an unknown cluster, a negative timeout, or headers without ``:path``, ``:method`` or
  ``:authority`` are BadArgument at dispatch; a timeout of 0 means none;
- a refused connection is answered by the async client's router with its own local reply (503,
  body :data:`CONNECT_FAILURE_BODY`), a timeout with 504 ``upstream request timeout``: ordinary
  answers with 3 headers (``:status``, ``content-length``, ``content-type``) and ``proxy_get_status``
  0 (both checked on Envoy 1.40). Only a reset (or a response over the async client's buffer
  limit) arrives with ZERO headers, ``proxy_get_status`` then giving BrokenConnection / ``reset``;
- a real answer carries the upstream's headers plus the router's ``x-envoy-upstream-service-time``
  (checked on Envoy 1.40);
- a root context that is deleted cancels its calls: their answers are never delivered.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import httpx

from .headermap import Pairs, text

CallState = Literal["pending", "answered", "failed", "timed_out", "cancelled"]

TIMEOUT_BODY = b"upstream request timeout"
#: Envoy 1.40's router body for a refused connection (seen on a callout to a closed port)
CONNECT_FAILURE_BODY = (b"upstream connect error or disconnect/reset before headers. "
                        b"reset reason: remote connection failure")


@dataclass(frozen=True)
class CalloutAnswer:
    """What ``proxy_on_http_call_response`` sees. ``failure``: delivered with zero headers."""

    headers: Pairs
    body: bytes = b""
    trailers: Pairs = field(default_factory=list)
    failure: bool = False


def envoy_local_answer(status: int, body: bytes) -> CalloutAnswer:
    """An answer the async client's router makes up itself (``Utility::prepareLocalReply``)."""
    headers: Pairs = [(":status", str(status))]
    if body:
        headers += [("content-length", str(len(body))), ("content-type", "text/plain")]
    return CalloutAnswer(headers, body)


TIMEOUT_ANSWER = envoy_local_answer(504, TIMEOUT_BODY)
CONNECT_FAILURE_ANSWER = envoy_local_answer(503, CONNECT_FAILURE_BODY)
RESET_ANSWER = CalloutAnswer([], failure=True)


@dataclass
class HttpCall:
    """One ``proxy_http_call`` as Envoy sent it.

    Attributes:
        token: the id the plugin got (per worker VM).
        worker: index of the VM that made it.
        effective_context: the context that was effective when the plugin dispatched it.
        root_context: the root context that owns it; the answer is delivered there.
        dispatched_ns: virtual clock at dispatch.
        state: pending | answered | failed | timed_out | cancelled.
        answer: what was delivered (None while pending or when cancelled).
    """

    token: int
    worker: int
    cluster: str
    headers: Pairs
    body: bytes
    trailers: Pairs
    timeout_ms: int
    effective_context: int
    root_context: int
    dispatched_ns: int
    state: CallState = "pending"
    answer: CalloutAnswer | None = None

    def header(self, name: str) -> str | None:
        """First value of request header ``name``."""
        return next((v for k, v in self.headers if k == name), None)

    @property
    def path(self) -> str | None:
        """``:path`` of the call."""
        return self.header(":path")

    @property
    def deadline_ns(self) -> int | None:
        """When Envoy times it out (None: no timeout)."""
        return self.dispatched_ns + self.timeout_ms * 1_000_000 if self.timeout_ms else None


class UpstreamHttpClient:
    """Sends callouts to real HTTP/1.1 servers, one address per cluster, and builds Envoy's answer.

    Args:
        addresses: cluster name -> (host, port).
        no_timeout_s: seconds to wait for a call dispatched with timeout 0 (Envoy would wait
            forever; a test must not).

    The call goes out with its own method, path, headers (``host`` from ``:authority``) and body;
    the answer carries ``:status``, the response headers in order (lower-cased) and the raw body
    bytes (no content decoding). Real calls take real time, while the virtual clock stands still.
    """

    def __init__(self, addresses: Mapping[str, tuple[str, int]], no_timeout_s: float = 30.0):
        self.addresses = dict(addresses)
        self.no_timeout_s = no_timeout_s
        self._client: httpx.Client | None = None  # made on first use (building one costs ~30 ms)
        self.elapsed_ms: list[float] = []

    def can_send(self, call: HttpCall) -> bool:
        """Whether ``call``'s cluster has an address."""
        return call.cluster in self.addresses

    def send(self, call: HttpCall) -> CalloutAnswer:
        """POST (or whatever ``:method`` says) ``call`` and return Envoy's view of the outcome."""
        host, port = self.addresses[call.cluster]
        headers = [(k, v) for k, v in call.headers if not k.startswith(":")]
        headers.append(("host", call.header(":authority") or host))
        timeout = call.timeout_ms / 1000 if call.timeout_ms else self.no_timeout_s
        if self._client is None:
            self._client = httpx.Client(follow_redirects=False)
        started = time.perf_counter()
        try:
            with self._client.stream(call.header(":method") or "POST", f"http://{host}:{port}{call.path}",
                                     headers=[(k.encode(), v.encode("utf-8", "surrogateescape")) for k, v in headers],
                                     content=call.body, timeout=timeout) as response:
                body = b"".join(response.iter_raw())
                elapsed = int((time.perf_counter() - started) * 1000)
                answer = CalloutAnswer([(":status", str(response.status_code)),
                                        *[(text(k).lower(), text(v)) for k, v in response.headers.raw],
                                        ("x-envoy-upstream-service-time", str(elapsed))], body)
        except httpx.TimeoutException:
            answer = TIMEOUT_ANSWER
        except httpx.ConnectError:
            answer = CONNECT_FAILURE_ANSWER
        except (httpx.RemoteProtocolError, httpx.ReadError):
            answer = RESET_ANSWER
        self.elapsed_ms.append((time.perf_counter() - started) * 1000)
        return answer

    def close(self) -> None:
        """Close pooled connections."""
        if self._client is not None:
            self._client.close()
            self._client = None
