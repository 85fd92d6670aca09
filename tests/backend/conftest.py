"""Fixtures of the backend tests: a real redis-server per session, storages driven from sync tests."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from sp_istio_cache.backend.storage import create_storage
from sp_istio_cache.services import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server on a free loopback port (no persistence), stopped at the end of the session."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()
    assert server.proc.poll() is not None, "redis-server still runs"


class SyncStorage:
    """Calls a storage's coroutines on one event loop, so tests read as plain calls."""

    def __init__(self, storage, loop: asyncio.AbstractEventLoop) -> None:
        self.storage = storage
        self.loop = loop

    def __getattr__(self, name):
        method = getattr(self.storage, name)
        return lambda *args, **kw: self.loop.run_until_complete(method(*args, **kw))


def storage_options(name: str, tmp_path, redis_url: str | None) -> dict:
    """Options that make a storage of ``name`` private to one test."""
    if name == "sqlite":
        return {"path": tmp_path / "cache.sqlite"}
    if name == "redis":
        return {"url": redis_url, "prefix": f"test-{uuid.uuid4().hex[:12]}:"}
    return {}


@pytest.fixture
def make_storage(request, tmp_path):
    """Factory ``make_storage(name, **options)`` -> an opened :class:`SyncStorage`; all closed at teardown."""
    loop = asyncio.new_event_loop()
    made: list[SyncStorage] = []

    def factory(name: str, **options) -> SyncStorage:
        url = request.getfixturevalue("redis_server").url if name == "redis" else None
        storage = create_storage(name, **{**storage_options(name, tmp_path, url), **options})
        loop.run_until_complete(storage.open())
        made.append(SyncStorage(storage, loop))
        return made[-1]

    yield factory
    for store in made:
        loop.run_until_complete(store.storage.close())
    loop.close()
