"""The cache backend: a keyed store behind the Softprobe-compatible HTTP API (docs/protocol.md).

Use :func:`sp_istio_cache.backend.app.create_app` with a store from
:func:`sp_istio_cache.backend.storage.create_storage`, or run ``python -m sp_istio_cache.backend``.
"""
