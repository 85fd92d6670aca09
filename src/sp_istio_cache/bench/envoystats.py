"""Envoy's ``/stats`` around a measured phase: read once before the load and once after it.

Reads (Envoy admin API, ``/stats?format=json`` with ``type=Counters|Gauges|Histograms``):

- before the load: the counters (every counter: filter, clusters). The bootstrap sets
  ``stats_flush_on_admin``, so this read also merges the histograms and starts a new interval;
- after the load: the counters again (the differences are the measured phase's) — this read
  merges the histograms that recorded during the load — then, once that merge has landed
  (:data:`MERGE_WAIT_S`), the gauges and the histograms, whose ``interval`` quantiles now cover
  the measured phase.

Histogram JSON (Envoy admin docs, "/stats?format=json"): an element of ``stats`` holds
``{"histograms": {"supported_quantiles": [0, 25, 50, ...], "computed_quantiles": [{"name": ...,
"values": [{"interval": v|null, "cumulative": v|null}, ...]}]}}``, one value per supported
quantile, null when the histogram has no sample.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .records import EnvoyStatsRecord, Quantiles

FILTER_PREFIX = "wasmcustom.sp_cache."
CLUSTERS = ("upstream", "sp_cache_backend")
CLUSTER_COUNTERS = ("upstream_rq_total", "upstream_rq_5xx", "upstream_cx_connect_fail", "upstream_rq_timeout",
                    "upstream_rq_rx_reset", "upstream_rq_tx_reset", "upstream_cx_destroy_remote_with_active_rq")
SERVER_GAUGES = ("memory_allocated", "memory_heap_size")
QUANTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0}
#: seconds given to the histogram merge that the after-load counter read started
MERGE_WAIT_S = 0.25


class StatsUnavailable(RuntimeError):
    """An admin read failed or answered something that is not Envoy's stats JSON."""


def _get(envoy: Any, query: str) -> dict[str, Any]:
    try:
        data = json.loads(envoy.admin_get(f"/stats?format=json&{query}", timeout_s=5))
    except (OSError, ValueError, RuntimeError) as exc:
        raise StatsUnavailable(f"Envoy admin /stats?{query}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("stats"), list):
        raise StatsUnavailable(f"Envoy admin /stats?{query}: unexpected answer")
    return data


def read_values(envoy: Any, kind: str) -> dict[str, int]:
    """Every stat of ``kind`` (``Counters`` or ``Gauges``) as {name: value}.

    Raises:
        StatsUnavailable: the admin API did not answer with stats JSON.
    """
    data = _get(envoy, f"type={kind}")
    return {s["name"]: int(s["value"]) for s in data["stats"] if "name" in s and "value" in s}


def read_histograms(envoy: Any, prefix: str = FILTER_PREFIX) -> dict[str, Quantiles]:
    """P50/P90/P99 of the ``interval`` of every histogram whose name starts with ``prefix``
    and that recorded samples in it (a histogram without samples is left out, never zero).

    Raises:
        StatsUnavailable: the admin API did not answer, or without the quantiles asked for.
    """
    data = _get(envoy, "type=Histograms")
    out: dict[str, Quantiles] = {}
    for entry in data["stats"]:
        block = entry.get("histograms") if isinstance(entry, dict) else None
        if not isinstance(block, dict):
            continue
        supported = [float(q) for q in block.get("supported_quantiles", [])]
        try:
            index = {k: supported.index(q) for k, q in QUANTILES.items()}
        except ValueError:
            raise StatsUnavailable(f"Envoy's histograms lack the quantiles {sorted(QUANTILES.values())}: "
                                   f"{supported}") from None
        for hist in block.get("computed_quantiles", []):
            name = hist.get("name", "")
            if not name.startswith(prefix):
                continue
            values = [v.get("interval") for v in hist.get("values", [])]
            picked = {k: float(values[i]) for k, i in index.items() if i < len(values) and values[i] is not None}
            if len(picked) == len(index):
                out[name.removeprefix("wasmcustom.")] = Quantiles(**picked)
    return out


def delta(after: dict[str, int], before: dict[str, int], name: str) -> int:
    """``after[name] - before[name]`` (a counter that appeared during the load started at 0)."""
    return after.get(name, 0) - before.get(name, 0)


def stats_record(envoy: Any, before: dict[str, int]) -> EnvoyStatsRecord:
    """The after-load reads and the record of the measured phase (see the module docstring).

    ``before``: the counters read just before the load (:func:`read_values`).

    Raises:
        StatsUnavailable: an admin read failed (Envoy died, or its admin API did not answer).
    """
    after = read_values(envoy, "Counters")
    time.sleep(MERGE_WAIT_S)
    # the histograms first: every admin read flushes again and starts a new (empty) interval
    histograms = read_histograms(envoy)
    gauges = read_values(envoy, "Gauges")
    filter_counters = {n.removeprefix("wasmcustom."): delta(after, before, n)
                       for n in sorted(set(after) | set(before)) if n.startswith(FILTER_PREFIX)}
    clusters = {c: {k: delta(after, before, f"cluster.{c}.{k}") for k in CLUSTER_COUNTERS}
                for c in CLUSTERS if any(n.startswith(f"cluster.{c}.") for n in after)}
    return EnvoyStatsRecord(
        filter_counters=filter_counters,
        filter_gauges={n.removeprefix("wasmcustom."): v for n, v in sorted(gauges.items())
                       if n.startswith(FILTER_PREFIX)},
        filter_histograms=histograms,
        clusters=clusters,
        server={k: gauges[f"server.{k}"] for k in SERVER_GAUGES if f"server.{k}" in gauges},
    )
