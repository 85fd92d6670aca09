"""Benchmark engine: scenario matrices, Locust runs in their own process, samples decoding,
resource sampling and honesty checks. Results go to :mod:`sp_istio_cache.analysis`."""
