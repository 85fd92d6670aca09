"""Backend replicas (issue 15): several backend processes on one Redis share every entry, and
through Envoy a replica that dies mid-run costs no client an error."""

from __future__ import annotations

import threading
import time
import urllib.request

import psutil
import pytest

from sp_istio_cache import procutil
from sp_istio_cache.otlp import decode_candidates
from sp_istio_cache.services import backend_service
from tests.backend.spans import RESPONSE, lookup_body, request, store_body


def keyed_post(service, path: str, body: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(service.url + path, data=body, method="POST",
                                 headers={**service.headers, "content-type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(req, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def replicas(tmp_path, redis_server):
    key_file = tmp_path / "backend.key"
    key_file.write_text("replica-test-key-0123456789\n")
    started = []
    try:
        for name in ("backend-a", "backend-b"):
            service = backend_service(tmp_path, storage="redis", redis_url=redis_server.url, key_file=key_file,
                                      name=name, extra_args=["--redis-prefix", f"{tmp_path.name}:"])
            started.append(service)
            service.start()
        yield started
    finally:
        for service in started:
            service.stop()
    assert not any(s.proc.poll() is None for s in started)


def test_a_store_through_one_replica_is_a_hit_through_the_other(replicas):
    a, b = replicas
    req = request(path="/shared")
    assert keyed_post(a, "/v1/traces", store_body(req)) == (200, b"stored 1\n")
    status, body = keyed_post(b, "/v1/inject", lookup_body(req))
    assert status == 200
    assert [c.response for c in decode_candidates(body)] == [RESPONSE]
    assert keyed_post(b, "/v1/invalidate", _invalidate(req)) == (200, b"invalidated 1 entries\n")
    assert keyed_post(a, "/v1/inject", lookup_body(req))[0] == 404
    assert (a.get_json("/stats")["stores"], b.get_json("/stats")["hits"], a.get_json("/stats")["misses"]) == (1, 1, 1)


def _invalidate(req) -> bytes:
    from tests.backend.spans import invalidate_body

    return invalidate_body(request("DELETE", req.path), [req.fingerprint()])


@pytest.mark.envoy
def test_killing_a_replica_mid_run_gives_no_client_error(make_stack):
    stack = make_stack(variant="filter", storage="redis", backend_replicas=2)
    assert len(stack.backends) == 2 and stack.redis is not None
    # every request a new cacheable key: each one is a lookup and a store through the replicas
    base = stack.listener_url + "/bytes/2048?cache_control=max-age%3D60&replica-test="
    seq = iter(range(10**9))
    statuses: list[int] = []
    bodies_ok: list[bool] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"{base}{next(seq)}", timeout=10) as reply:
                    statuses.append(reply.status)
                    bodies_ok.append(len(reply.read()) == 2048)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
            except OSError:
                statuses.append(-1)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while min(_requests(b) for b in stack.backends) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # both replicas take lookups (round robin)
        assert min(_requests(b) for b in stack.backends) >= 3
        victim, survivor = stack.backends
        procutil.terminate_group(victim.proc.pid, grace_s=0)  # SIGTERM, then SIGKILL at once
        before = _requests(survivor)
        killed_at = len(statuses)
        time.sleep(3)
    finally:
        stop.set()
        worker.join(30)
    assert not psutil.pid_exists(victim.proc.pid) or psutil.Process(victim.proc.pid).status() == psutil.STATUS_ZOMBIE
    assert len(statuses) - killed_at > 20, "the load stopped after the kill"
    assert set(statuses) == {200}, f"client errors: {sorted(set(statuses))}"
    assert all(bodies_ok)
    assert _requests(survivor) > before  # the other replica kept serving
    stats = stack.envoy.stats()
    noticed = {k: stats.get(f"cluster.sp_cache_backend.{k}", 0)
               for k in ("health_check.failure", "health_check.network_failure",
                         "outlier_detection.ejections_enforced_total")}
    assert sum(noticed.values()) >= 1, noticed  # Envoy took the dead replica out (health check or outlier detection)
    pids = [b.proc.pid for b in stack.backends] + [stack.redis.proc.pid, stack.envoy.pid]
    stack.cleanup()
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def _requests(service) -> int:
    """Protocol calls a replica has answered (any status), from its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(service.url + "/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return int(sum(s.value for family in text_string_to_metric_families(text)
                   for s in family.samples
                   if s.name == "sp_cache_backend_request_duration_seconds_count"
                   and s.labels["route"] in ("/v1/inject", "/v1/traces")))
