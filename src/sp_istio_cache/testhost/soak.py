"""Many plugin reconfigurations and requests through one model, cheaply, with guest memory sampled:
the leak check behind issue 11's soak ("10,000 reconfigurations and 100,000 requests, Wasm memory
flat within 5 %").

Cheap because: the module is compiled once; configurations that repeat reuse Envoy's canary
verdict (``plugin_canary_cache_``), so alternating two configurations costs no extra VM; a model
built from ``load_module(..., fuel=False)`` skips fuel metering; each request is a few calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .abi import LogLevel
from .envoy import EnvoyModel

Exchange = Callable[[EnvoyModel, int], None]


def get_exchange(model: EnvoyModel, i: int) -> None:
    """One GET through worker ``i % concurrency``: every callout is answered 404 before the upstream
    answers 200 with a small body, and every callout after it 200 (a miss, then a store)."""
    stream = model.new_stream(worker=i % model.concurrency)
    stream.send_request_headers([(":method", "GET"), (":path", f"/soak/{i % 64}"), (":authority", "svc.soak"),
                                 (":scheme", "http")], end_of_stream=True)
    for call in model.pending_calls:
        model.respond_http_call(call, 404)
    if not stream.deleted and stream.local_response is None:
        stream.respond(200, [("content-type", "text/plain"), ("cache-control", "max-age=60")], b"soak body")
    stream.done()
    for call in model.pending_calls:
        model.respond_http_call(call, 200)


@dataclass
class SoakResult:
    """Guest linear memory (bytes) per worker, sampled after the warm-up and after every round.

    Attributes:
        samples: one list per sample, one entry per worker VM.
    """

    reconfigurations: int
    requests: int
    samples: list[list[int]] = field(default_factory=list)

    @property
    def growth(self) -> float:
        """Largest relative growth of any worker between the first and the last sample."""
        first, last = self.samples[0], self.samples[-1]
        return max((b - a) / a for a, b in zip(first, last, strict=True))


def soak(model: EnvoyModel, configs: Sequence[dict | bytes], *, reconfigurations: int, requests: int,
         exchange: Exchange = get_exchange, warmup_rounds: int = 2, samples: int = 20) -> SoakResult:
    """Alternate ``configs`` ``reconfigurations`` times with ``requests`` exchanges spread evenly
    between them (after ``warmup_rounds`` untimed rounds that let the allocator settle).

    Raises:
        ValueError: fewer than two configurations (reconfiguring to the same one is a no-op).
        AssertionError: a reconfiguration was refused.
    """
    if len(configs) < 2:
        raise ValueError("give at least two different configurations to alternate")
    per_round = max(1, requests // max(1, reconfigurations))
    result = SoakResult(reconfigurations, requests)
    every = max(1, reconfigurations // samples)
    done = 0
    for r in range(-warmup_rounds, reconfigurations):
        refused = not model.reconfigure(configs[r % len(configs)])
        assert not refused, f"reconfiguration {r} refused: {model.log_messages(LogLevel.ERROR)[-3:]}"
        for _ in range(per_round if r >= 0 else 1):
            exchange(model, done)
            done += 1
        if r == -1 or (r >= 0 and (r % every == every - 1 or r == reconfigurations - 1)):
            result.samples.append(model.memory_bytes_by_worker())
    return result
