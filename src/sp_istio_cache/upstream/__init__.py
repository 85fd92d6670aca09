"""The upstream test application: deterministic bodies, configurable status, headers, latency,
chunking and gzip, with request counters (``python -m sp_istio_cache.upstream``)."""
