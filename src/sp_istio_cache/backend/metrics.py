"""The backend's Prometheus metrics (``GET /metrics``) through ``prometheus-client``.

Names (all prefixed ``sp_cache_backend_``; docs/backend.md lists them with PromQL):

- ``lookups_total{result="hit"|"miss"}``, ``stores_total``, ``stored_bytes_total``,
  ``invalidations_total``, ``invalidated_entries_total``;
- ``evictions_total{reason="capacity"|"expired"}`` (entries this process removed);
- ``rejected_total{route, code}`` (400, 401, 413, 503 answers), ``auth_failures_total``;
- ``request_duration_seconds{route}`` histogram;
- gauges read from the storage at scrape time: ``storage_entries``, ``storage_bytes``,
  ``storage_max_entries``, ``storage_max_bytes``.

With several worker processes (``--workers N``) prometheus-client's multiprocess mode is used:
``PROMETHEUS_MULTIPROC_DIR`` must name an empty directory before ``prometheus_client`` is
imported (``python -m sp_istio_cache.backend`` does that), each process writes its values there,
and a scrape of any worker sums counters and histograms over all of them
(https://prometheus.github.io/client_python/multiprocess/). Storage gauges use the
``mostrecent`` mode: every worker reads the same storage.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from .storage import StorageStats

PREFIX = "sp_cache_backend_"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: request latency buckets, seconds (100 µs .. 2.5 s)
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
ROUTES = ("/v1/inject", "/v1/traces", "/v1/invalidate", "/healthz", "/readyz", "/metrics", "/stats", "other")


def multiprocess_mode() -> bool:
    """Whether this process writes its metrics to ``PROMETHEUS_MULTIPROC_DIR``."""
    return bool(os.environ.get(MULTIPROC_ENV))


class BackendMetrics:
    """Every metric of one backend process, in its own registry (so tests can run many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        lookups = Counter(PREFIX + "lookups", "Lookups answered from the storage, by result.", ["result"], registry=r)
        self.hits = lookups.labels(result="hit")
        self.misses = lookups.labels(result="miss")
        self.stores = Counter(PREFIX + "stores", "Entries stored.", registry=r)
        self.stored_bytes = Counter(PREFIX + "stored_bytes", "Bytes of spans stored.", registry=r)
        self.invalidations = Counter(PREFIX + "invalidations", "Invalidate calls answered.", registry=r)
        self.invalidated = Counter(PREFIX + "invalidated_entries", "Entries deleted by invalidate calls.",
                                   registry=r)
        evictions = Counter(PREFIX + "evictions", "Entries removed by this process, by reason.", ["reason"],
                            registry=r)
        self.evicted_capacity = evictions.labels(reason="capacity")
        self.evicted_expired = evictions.labels(reason="expired")
        self.rejected = Counter(PREFIX + "rejected", "Requests refused, by route and status code.",
                                ["route", "code"], registry=r)
        self.auth_failures = Counter(PREFIX + "auth_failures", "Requests without a valid x-public-key.",
                                     registry=r)
        duration = Histogram(PREFIX + "request_duration_seconds", "Time from request to answer, by route.",
                             ["route"], buckets=BUCKETS, registry=r)
        self.duration = {route: duration.labels(route=route) for route in ROUTES}

        def gauge(name: str, documentation: str) -> Gauge:
            return Gauge(PREFIX + name, documentation, registry=r, multiprocess_mode="mostrecent")

        self.entries = gauge("storage_entries", "Entries in the storage.")
        self.bytes = gauge("storage_bytes", "Bytes of spans in the storage.")
        self.max_entries = gauge("storage_max_entries", "The storage's entry limit.")
        self.max_bytes = gauge("storage_max_bytes", "The storage's byte limit.")

    def set_storage(self, stats: StorageStats) -> None:
        """Update the storage gauges."""
        self.entries.set(stats.entries)
        self.bytes.set(stats.bytes)
        self.max_entries.set(stats.max_entries)
        self.max_bytes.set(stats.max_bytes)

    def collecting_registry(self) -> CollectorRegistry:
        """The registry a scrape reads: every process's files in multiprocess mode, else this one."""
        if not multiprocess_mode():
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry

    def exposition(self) -> bytes:
        """The text exposition format of every metric (all processes in multiprocess mode)."""
        return generate_latest(self.collecting_registry())

    def totals(self) -> dict[str, int]:
        """Counter totals for ``/stats`` (summed over processes in multiprocess mode)."""
        registry = self.collecting_registry()

        def value(name: str, **labels: str) -> int:
            return int(registry.get_sample_value(PREFIX + name + "_total", labels) or 0)

        hits, misses = value("lookups", result="hit"), value("lookups", result="miss")
        rejected = sum(int(s.value) for metric in registry.collect() if metric.name == PREFIX + "rejected"
                       for s in metric.samples if s.name.endswith("_total"))
        return {"lookups": hits + misses, "hits": hits, "misses": misses, "stores": value("stores"),
                "stored_bytes": value("stored_bytes"), "invalidations": value("invalidations"),
                "invalidated_entries": value("invalidated_entries"), "rejected": rejected,
                "auth_failures": value("auth_failures")}
