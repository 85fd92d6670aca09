"""The response-size limit for *your* traffic: a run driven by a traffic profile (``--profile``,
``--upstream``; the profile is the run's ``profile.json``).

For each candidate limit *L* (powers of two from 1 KiB up to the first one that holds the
largest response of the profile):

- ``cacheable_share``: the share of the traffic (by the rows' weights) whose response is
  cacheable **and** fits under *L*; ``cacheable_bytes_share``: the same share of response bytes.
  A row counts as cacheable when its method is GET or HEAD, its status is unknown or one RFC 9110
  §15.1 calls heuristically cacheable (200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414,
  501), and its Cache-Control is unknown or has neither ``no-store`` nor ``private`` (RFC 9111
  §5.2.2). Rows whose response size is unknown are counted apart (``unknown_size_share``).
- ``predicted_memory_bytes`` at the **observed** concurrency: requests in flight in the filter
  cells, by Little's law (throughput × mean latency, the highest median over the cells),
  ``rss_baseline + max(0, rss_filter − rss_baseline) + copies × in-flight × min(L, largest
  response)``: a stream holds at most *L* bytes, and never more than the largest body the
  traffic has.

Latency is judged once for the profile: every ``filter`` profile cell against its baseline, per
repetition, as in :mod:`sp_istio_cache.analysis.tuning`. The limit is the smallest candidate that
holds every cacheable response, or the largest one within the memory budget when that one is
not; none when the latency budget is missed.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .results import RunData
from .tuning import (
    EVALUATION_COLUMNS,
    Budget,
    Choice,
    cell_intervals,
    latency_status,
    miss_reason,
    paired,
    records,
    worst_case_memory_bytes,
)

KIB = 1024
#: RFC 9110 §15.1: status codes that are heuristically cacheable
HEURISTIC_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})


def cacheable(row: Any) -> bool:
    """Whether a profile row's response may be stored (module docstring; unknowns assumed yes)."""
    if row.method not in ("GET", "HEAD"):
        return False
    if row.status is not None and row.status not in HEURISTIC_STATUSES:
        return False
    directives = {d.split("=", 1)[0].strip().lower() for d in (row.cache_control or "").split(",")}
    return not directives & {"no-store", "private"}


def candidates(largest: int) -> list[int]:
    """Powers of two from 1 KiB up to the first one ≥ ``largest`` bytes."""
    out = [KIB]
    while out[-1] < largest:
        out.append(out[-1] * 2)
    return out


def observed_concurrency(run: RunData, cells: list[str]) -> float:
    """Requests in flight in ``cells`` (Little's law: rps × mean latency), the highest median."""
    rows = run.rows[(run.rows["outcome"] == "ALL") & run.rows["cell_id"].isin(cells)
                    & (run.rows["status"] == "measured")]
    per_rep = rows["rps"] * rows["mean_us"] / 1e6
    by_cell = per_rep.groupby(rows["cell_id"]).median()
    return float(by_cell.max()) if len(by_cell) else math.nan


def share_table(profile: Any, limits: list[int]) -> pd.DataFrame:
    """Per candidate limit: ``cacheable_share``, ``cacheable_bytes_share`` (module docstring)."""
    total_w = sum(r.weight for r in profile.rows)
    total_b = sum(r.weight * (r.response_body_bytes or 0) for r in profile.rows) or 1
    out = []
    for limit in limits:
        fits = [r for r in profile.rows if r.response_body_bytes is not None and r.response_body_bytes <= limit
                and cacheable(r)]
        out.append({"size": limit, "cacheable_share": sum(r.weight for r in fits) / total_w,
                    "cacheable_bytes_share": sum(r.weight * r.response_body_bytes for r in fits) / total_b})
    return pd.DataFrame(out)


def choose_for_profile(run: RunData, budget: Budget) -> tuple[Choice, dict[str, Any]]:
    """The ``max_response_body_bytes`` choice for the run's profile and a summary of the traffic
    (``tuning.json`` ``traffic``).

    Raises:
        ValueError: the run has no traffic profile.
    """
    profile = run.profile
    if profile is None:
        raise ValueError(f"{run.run_dir}: the run has no traffic profile (profile.json)")
    key = "max_response_body_bytes"
    rows = run.rows
    pairs = paired(run, (rows["variant"] == "filter") & (rows["traffic"] == "profile"))
    if pairs.empty:
        return Choice("profile", key, None, False, "no filter cell ran the profile: not measured",
                      pd.DataFrame(columns=EVALUATION_COLUMNS)), {"profile": profile.name}
    cells = cell_intervals(pairs)
    unpaired = sorted(cells.loc[cells["pairs"] == 0, "cell_id"])
    latency = "undecided" if unpaired else latency_status(cells.dropna(subset=["added_median"]), budget)
    worst = cells.sort_values("added_median", ascending=False, na_position="first").iloc[0]
    sizes = [r.response_body_bytes for r in profile.rows if r.response_body_bytes is not None]
    largest = max(sizes, default=0)
    largest_cacheable = max((r.response_body_bytes for r in profile.rows
                             if r.response_body_bytes is not None and cacheable(r)), default=0)
    in_flight = observed_concurrency(run, list(cells["cell_id"]))
    streams = in_flight if not math.isnan(in_flight) else float(budget.concurrency)
    rss_base, rss_filter = float(pairs["rss_max_bytes_base"].max()), float(pairs["rss_max_bytes"].max())
    oom = bool(pairs["oom_killed"].astype(bool).any())
    table = share_table(profile, candidates(max(largest, 1)))
    common = {"latency": latency, "oom": oom, "p99_added_us": worst["added_median"],
              "p99_added_ci_low": worst["added_ci_low"], "p99_added_ci_high": worst["added_ci_high"],
              "p99_ratio": worst["ratio_median"], "p99_ratio_ci_low": worst["ratio_ci_low"],
              "p99_ratio_ci_high": worst["ratio_ci_high"], "worst_cell": worst["cell_id"], "rss_baseline": rss_base,
              "rss_filter": rss_filter, "unpaired": ", ".join(unpaired),
              "cells": ", ".join(sorted(cells["cell_id"])),
              "baselines": ", ".join(sorted(set(pairs["cell_id_base"].dropna())))}
    table = table.assign(**common)
    table["predicted_memory_bytes"] = [worst_case_memory_bytes(rss_base, rss_filter, min(s, largest), budget, streams)
                                       for s in table["size"]]
    table["meets_memory"] = (table["predicted_memory_bytes"] <= budget.memory_bytes) & (not oom)
    table["status"] = ["fail" if latency == "fail" or not m else latency for m in table["meets_memory"]]
    rests = sorted(set(cells["cell_id"]) | set(pairs["cell_id_base"].dropna()))
    traffic = {"profile": profile.name, "source": profile.source, "rows": len(profile.rows),
               "largest_response_bytes": largest, "largest_cacheable_bytes": largest_cacheable,
               "unknown_size_share": sum(r.weight for r in profile.rows if r.response_body_bytes is None)
               / sum(r.weight for r in profile.rows),
               "observed_concurrency": None if math.isnan(in_flight) else in_flight,
               "candidates": records(table[["size", "cacheable_share", "cacheable_bytes_share",
                                            "predicted_memory_bytes", "meets_memory"]])}
    first = records(table.iloc[:1])[0]
    if latency != "pass":
        reason = (f"on profile {profile.name} the filter does not pass the latency budget ({budget.describe()}): "
                  f"{miss_reason(first, budget)}")
        return Choice("profile", key, None, True, reason, table, first, rests), traffic
    fitting = table[table["meets_memory"]]
    if fitting.empty:
        reason = f"on profile {profile.name} even {KIB:,} B misses the memory budget: {miss_reason(first, budget)}"
        return Choice("profile", key, None, True, reason, table, first, rests), traffic
    holds_all = fitting[fitting["size"] >= largest_cacheable]
    pick = holds_all.iloc[0] if len(holds_all) else fitting.iloc[-1]
    limit = int(pick["size"])
    reason = (f"{limit:,} B holds {pick['cacheable_share']:.1%} of profile {profile.name}'s requests as cacheable "
              f"responses ({pick['cacheable_bytes_share']:.1%} of its response bytes) within the budget "
              f"({budget.describe()}), with {streams:,.1f} requests in flight: worst case "
              f"{pick['predicted_memory_bytes'] / (1024 * 1024):,.1f} MiB")
    if not len(holds_all):
        reason += f"; a limit holding every cacheable response ({largest_cacheable:,} B) would miss the memory budget"
    stop = None if len(holds_all) else records(table[~table["meets_memory"]].iloc[:1])[0]
    return Choice("profile", key, limit, True, reason, table, stop, rests), traffic
