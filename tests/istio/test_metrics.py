"""The names docs/metrics-prometheus.md and the Grafana dashboard query are the names Envoy 1.40
gives the filter's metrics in Prometheus form, and the dashboard is valid and queries only them.

Envoy registers ``wasmcustom`` as a custom stat namespace: ``wasmcustom.sp_cache.hit`` is
``sp_cache_hit`` in ``/stats/prometheus`` (namespace stripped, no ``envoy_`` prefix). The guest is a
FAKE (tests/istio/fake_metrics_guest.wat) defining one counter and the lookup histogram.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
import wasmtime

from sp_istio_cache import envoyconf
from sp_istio_cache.httpclient import request
from sp_istio_cache.paths import REPO_ROOT
from sp_istio_cache.runtime import LocalRuntime
from sp_istio_cache.services import upstream_service

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "sp-istio-cache.json"
DOC = REPO_ROOT / "docs" / "metrics-prometheus.md"


@pytest.mark.envoy
def test_envoy_names_the_filter_metrics_without_prefix(tmp_path):
    guest = tmp_path / "fake_metrics_guest.wasm"
    guest.write_bytes(wasmtime.wat2wasm(Path(__file__).with_name("fake_metrics_guest.wat").read_text()))
    upstream, envoy = upstream_service(tmp_path), None
    try:
        upstream.start()
        envoy = LocalRuntime(envoyconf.render(envoyconf.EnvoyConfig(
            variant="filter", upstream_port=upstream.port, backend_port=9, wasm_path=guest)), tmp_path / "e",
            concurrency=1)
        envoy.start()
        envoy.wait_ready()
        for _ in range(3):
            assert request(envoy.listener_url + "/bytes/4").status == 200
        deadline, text = time.monotonic() + 20, ""
        while time.monotonic() < deadline:  # histograms appear after Envoy's stats flush (5 s)
            text = urllib.request.urlopen(envoy.admin_url + "/stats/prometheus", timeout=5).read().decode()
            if "sp_cache_lookup_duration_us_count{} 3" in text:
                break
            time.sleep(0.5)
    finally:
        if envoy is not None:
            envoy.stop()
        upstream.stop()
    lines = set(text.splitlines())
    assert {"# TYPE sp_cache_hit_fake counter", "sp_cache_hit_fake{} 3", "# TYPE sp_cache_lookup_duration_us histogram",
            'sp_cache_lookup_duration_us_bucket{le="1000"} 0', 'sp_cache_lookup_duration_us_bucket{le="2500"} 3',
            "sp_cache_lookup_duration_us_count{} 3"} <= lines
    assert "wasmcustom" not in text


def _exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_is_valid_and_every_panel_queries_something():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] == "sp-istio-cache"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 6
    for panel in panels:
        assert panel["title"] and panel["targets"], panel
        assert all(t["expr"].count("(") == t["expr"].count(")") for t in panel["targets"]), panel["title"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_dashboard_queries_only_metrics_the_doc_lists():
    doc = DOC.read_text()
    names = set()
    for expr in _exprs():
        names |= set(re.findall(r"\b(sp_cache_[a-z0-9_]+|envoy_[a-z0-9_]+|istio_[a-z0-9_]+)", expr))
        names |= {m.replace("(_.+)?", "") for m in re.findall(r'__name__=~"([^"]+)"', expr)}
    assert names
    for name in names:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert base in doc, f"{name} is queried by the dashboard but not listed in docs/metrics-prometheus.md"
