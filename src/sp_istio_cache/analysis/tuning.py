"""Choose the filter's body-size limits from a benchmark results table (pure functions).

Inputs are the tidy table of :mod:`sp_istio_cache.analysis.results` (the ``ALL`` outcome rows
are used) and a :class:`Budget`: a p99 added-latency budget (µs over the baseline, and/or a
ratio to the baseline), a memory budget in bytes and the number of concurrent streams the
sidecar must carry at once (e.g. a 128 MiB / 1 CPU sidecar with 32 streams in flight).

The rule, for one axis (``payload_bytes`` → ``max_response_body_bytes``, ``request_body_bytes``
→ ``max_request_body_bytes``):

1. For every measured size *S* of the axis, take the ``filter`` cells at *S* (every hit ratio,
   every load setting) and the ``baseline`` cell of the same point.
2. *S* meets the latency budget when, for every such cell, ``p99_filter − p99_baseline`` ≤
   ``p99_added_us`` and ``p99_filter / p99_baseline`` ≤ ``p99_ratio`` (each budget only when set).
   The worst cell counts: the hit ratio 0 cells (every response copied and stored) usually are.
3. *S* meets the memory budget when :func:`worst_case_memory_bytes` ≤ ``memory_bytes``.
4. The limit is the largest *S* such that *S* **and every smaller measured size** meet both
   budgets: a limit admits every smaller body, so a failing smaller size cannot be skipped.
5. The cells the decision rests on (every size up to and including the first failing one) must
   not be ``generator_limited``: when Locust, not Envoy, was the bottleneck the latencies are
   the generator's, and :class:`GeneratorLimitedError` is raised naming the cells.
6. When the smallest measured size already fails, :class:`NoSizeMeetsBudgetError` is raised:
   the filter cannot be deployed within these budgets, and no limit would change that.

Worst-case memory (step 3), in bytes::

    predicted(S) = rss_baseline(S) + max(0, rss_filter(S) − rss_baseline(S))
                   + copies_per_stream × concurrency × S

``rss_*`` are the measured ``rss_max_bytes`` of the cells (Envoy process RSS, or the container's
memory in Docker, sampled every 250 ms by the bench). The last term is the buffering the limit
allows: the filter copies a response body of up to ``max_response_body_bytes`` into the Wasm
heap while it streams through (``Stream.onResponseBody`` in ``filter/src/filter.zig``) and, at
the end of the stream, encodes it once more into the ``extract`` span it hands to Envoy
(``finishStore``) — two copies per stream at the peak, hence ``copies_per_stream = 2`` by
default. Request bodies are held by Envoy for the lookup and copied into the ``inject`` span:
two copies again. The measured overhead already contains the buffering of the bench's own
users, so the formula counts it twice: it errs on the safe side. Wasm linear memory never
shrinks, so a peak once reached stays resident in every worker's VM.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

AXES = {"payload_bytes": "max_response_body_bytes", "request_body_bytes": "max_request_body_bytes"}
MIB = 1024 * 1024


class TuningError(ValueError):
    """No recommendation can be made from this table; the message says why."""


class GeneratorLimitedError(TuningError):
    """Cells the recommendation would rest on were limited by the load generator."""


class NoSizeMeetsBudgetError(TuningError):
    """Even the smallest measured size misses a budget."""


@dataclass(frozen=True)
class Budget:
    """What the sidecar may spend.

    Attributes:
        memory_bytes: memory limit of the sidecar (e.g. 128 MiB = 134217728).
        concurrency: streams in flight at once that may each buffer a body up to the limit.
        p99_added_us: allowed p99 latency added by the filter over the baseline, µs (None: no check).
        p99_ratio: allowed p99 ratio filter / baseline (None: no check).
        copies_per_stream: body copies held per stream at the peak (see the module docstring).
        cpu_cores: the sidecar's CPU limit, stated in the report (the bench's cells say whether
            that CPU was the bottleneck; this number is not used in the arithmetic).
    """

    memory_bytes: int
    concurrency: int
    p99_added_us: float | None = None
    p99_ratio: float | None = None
    copies_per_stream: float = 2.0
    cpu_cores: float | None = None

    def __post_init__(self) -> None:
        if self.p99_added_us is None and self.p99_ratio is None:
            raise ValueError("a latency budget is needed: p99_added_us and/or p99_ratio")
        if self.memory_bytes <= 0 or self.concurrency < 1 or self.copies_per_stream <= 0:
            raise ValueError("memory_bytes, concurrency and copies_per_stream must be positive")

    def describe(self) -> str:
        """One line, e.g. ``p99 +2000 µs, 128 MiB at 32 concurrent streams, 1 CPU``."""
        parts = []
        if self.p99_added_us is not None:
            parts.append(f"p99 +{self.p99_added_us:g} µs")
        if self.p99_ratio is not None:
            parts.append(f"p99 ×{self.p99_ratio:g}")
        mem = f"{self.memory_bytes / MIB:g} MiB at {self.concurrency} concurrent streams"
        cpu = f", {self.cpu_cores:g} CPU" if self.cpu_cores else ""
        return f"{' and '.join(parts)}; {mem}{cpu}"


def worst_case_memory_bytes(rss_baseline: float, rss_filter: float, size: float, budget: Budget) -> float:
    """``rss_baseline + max(0, rss_filter − rss_baseline) + copies × concurrency × size``
    (see the module docstring for where each term comes from)."""
    return rss_baseline + max(0.0, rss_filter - rss_baseline) + budget.copies_per_stream * budget.concurrency * size


@dataclass
class Choice:
    """The limit for one axis and the per-size evidence.

    ``limit`` is None when the axis was not measured (``measured`` False); ``table`` has one row
    per size: ``size``, ``p99_added_us``, ``p99_ratio`` (worst filter cell), ``rss_baseline``,
    ``rss_filter``, ``predicted_memory_bytes``, ``meets_latency``, ``meets_memory``, ``ok``,
    ``generator_limited`` and the ``cells`` it rests on.
    """

    axis: str
    key: str
    limit: int | None
    measured: bool
    reason: str
    table: pd.DataFrame = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"axis": self.axis, "key": self.key, "limit": self.limit, "measured": self.measured,
                "reason": self.reason, "sizes": _records(self.table)}


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for rec in table.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else
                        (v.item() if hasattr(v, "item") else v)) for k, v in rec.items()})
    return out


def _all_rows(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["outcome"] == "ALL"] if "outcome" in frame.columns else frame
    need = ["variant", "payload_bytes", "request_body_bytes", "target_hit_ratio", "p99_us",
            "rss_max_bytes", "generator_limited", "cell_id"]
    missing = [c for c in need if c not in rows.columns]
    if missing:
        raise TuningError(f"results table lacks columns {missing}")
    return rows


def evaluate(frame: pd.DataFrame, budget: Budget, axis: str = "payload_bytes") -> pd.DataFrame:
    """Per measured size of ``axis``: the worst filter cell against its baseline and the budgets
    (columns listed on :class:`Choice`). Empty when the axis has no filter cell > 0 bytes."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {sorted(AXES)}, got {axis!r}")
    rows = _all_rows(frame)
    other = "request_body_bytes" if axis == "payload_bytes" else None
    keys = ["payload_bytes", "request_body_bytes", "target_hit_ratio"]
    for extra in ("mode", "users", "target_rate"):
        if extra in rows.columns:
            keys.append(extra)
    filt = rows[(rows["variant"] == "filter") & (rows[axis] > 0)]
    if other is not None:
        filt = filt[filt[other] == 0]  # response limit: GET cells only, request bodies are the other axis
    base = rows[rows["variant"] == "baseline"]
    merged = filt.merge(base, on=keys, how="left", suffixes=("", "_base"))
    out = []
    for size, group in merged.groupby(axis, sort=True):
        if group["p99_us_base"].isna().any():
            lacking = ", ".join(group.loc[group["p99_us_base"].isna(), "cell_id"])
            raise TuningError(f"no baseline cell for {lacking}: run the baseline variant in the same matrix")
        added = group["p99_us"] - group["p99_us_base"]
        ratio = group["p99_us"] / group["p99_us_base"]
        rss_base = float(group["rss_max_bytes_base"].max())
        rss_filter = float(group["rss_max_bytes"].max())
        predicted = worst_case_memory_bytes(rss_base, rss_filter, float(size), budget)
        meets_latency = True
        if budget.p99_added_us is not None:
            meets_latency &= bool(added.max() <= budget.p99_added_us)
        if budget.p99_ratio is not None:
            meets_latency &= bool(ratio.max() <= budget.p99_ratio)
        # an Envoy the kernel OOM-killed under this size is the plainest failure of the memory budget
        oom = bool(group["oom_killed"].fillna(False).astype(bool).any()) if "oom_killed" in group else False
        meets_memory = bool(predicted <= budget.memory_bytes) and not oom
        limited = group["generator_limited"].astype(bool) | group["generator_limited_base"].astype(bool)
        limited_cells = sorted(set(group.loc[group["generator_limited"].astype(bool), "cell_id"])
                               | set(group.loc[group["generator_limited_base"].astype(bool), "cell_id_base"]))
        out.append({
            "size": int(size), "p99_added_us": float(added.max()), "p99_ratio": float(ratio.max()),
            "rss_baseline": rss_base, "rss_filter": rss_filter, "predicted_memory_bytes": predicted,
            "meets_latency": meets_latency, "meets_memory": meets_memory,
            "ok": meets_latency and meets_memory, "generator_limited": bool(limited.any()),
            "limited_cells": ", ".join(limited_cells),
            "cells": ", ".join(sorted(set(group["cell_id"]) | set(group["cell_id_base"]))),
        })
    columns = ["size", "p99_added_us", "p99_ratio", "rss_baseline", "rss_filter", "predicted_memory_bytes",
               "meets_latency", "meets_memory", "ok", "generator_limited", "limited_cells", "cells"]
    return pd.DataFrame(out, columns=columns)


def _miss_reason(row: pd.Series, budget: Budget) -> str:
    why = []
    if not row["meets_latency"]:
        why.append(f"p99 +{row['p99_added_us']:,.0f} µs (×{row['p99_ratio']:.2f}) over the latency budget")
    if not row["meets_memory"]:
        why.append(f"worst case {row['predicted_memory_bytes'] / MIB:,.1f} MiB > {budget.memory_bytes / MIB:g} MiB")
    return " and ".join(why)


def choose_limit(frame: pd.DataFrame, budget: Budget, axis: str = "payload_bytes") -> Choice:
    """The largest measured size of ``axis`` that, with every smaller size, meets both budgets.

    Only cells where Envoy, not Locust, was the bottleneck count: the walk up the sizes stops at
    the first size with a generator-limited cell, and the choice is the last size proven to fit
    (conservative; the reason names the cells to re-measure for a larger limit).

    Raises:
        GeneratorLimitedError: the smallest measured size is generator-limited, so no size is
            proven (names the cells).
        NoSizeMeetsBudgetError: the smallest measured size already misses a budget.
    """
    key = AXES[axis]
    table = evaluate(frame, budget, axis)
    if table.empty:
        return Choice(axis, key, None, False, f"no filter cell with {axis} > 0 in this run: not measured", table)
    chosen: int | None = None
    failing = None
    unjudged = None
    for _, row in table.iterrows():
        if row["generator_limited"]:
            if chosen is None:
                raise GeneratorLimitedError(
                    f"{key}: refusing to recommend from generator-limited cells at {row['size']:,} B: "
                    f"{row['limited_cells']} (Locust, not Envoy, was the bottleneck; use fewer users, a "
                    "fixed --rate, or more Locust processes)")
            unjudged = row
            break
        if not row["ok"]:
            failing = row
            break
        chosen = int(row["size"])
    if chosen is None:
        raise NoSizeMeetsBudgetError(
            f"{key}: even the smallest measured size ({failing['size']:,} B) misses the budget "
            f"({budget.describe()}): {_miss_reason(failing, budget)}")
    if unjudged is not None:
        reason = (f"{chosen:,} B is the largest size proven to meet the budget ({budget.describe()}); "
                  f"the next size, {unjudged['size']:,} B, could not be judged: Locust, not Envoy, was the "
                  f"bottleneck in {unjudged['limited_cells']} (re-measure it with fewer users, a fixed "
                  "--rate or more Locust processes to know whether a larger limit fits)")
    elif failing is None:
        reason = (f"{chosen:,} B is the largest measured size and every measured size meets the budget "
                  f"({budget.describe()}); larger bodies were not measured")
    else:
        reason = (f"{chosen:,} B is the largest measured size meeting the budget ({budget.describe()}); "
                  f"the next size, {failing['size']:,} B, misses it: {_miss_reason(failing, budget)}")
    return Choice(axis, key, chosen, True, reason, table)


@dataclass
class Recommendation:
    """Both limits, the plugin configuration to deploy and the budget they were chosen for."""

    budget: Budget
    response: Choice
    request: Choice
    plugin_config: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"budget": asdict(self.budget), "plugin_config": self.plugin_config,
                "response": self.response.as_dict(), "request": self.request.as_dict()}


def recommend(frame: pd.DataFrame, budget: Budget, base_config: dict[str, Any] | None = None) -> Recommendation:
    """Choose ``max_response_body_bytes`` and ``max_request_body_bytes`` and build the plugin
    configuration (``base_config`` plus the two limits), validated against the filter's schema.

    An axis the run did not measure keeps ``base_config``'s value, else the schema default, and
    its reason says so.

    Raises:
        TuningError (and subclasses): see :func:`choose_limit`; PluginConfigError: invalid config.
    """
    from ..pluginconfig import defaults, validate

    config = dict(base_config or {})
    response = choose_limit(frame, budget, "payload_bytes")
    request = choose_limit(frame, budget, "request_body_bytes")
    for choice in (response, request):
        if choice.limit is not None:
            config[choice.key] = choice.limit
        else:
            config.setdefault(choice.key, defaults()[choice.key])
            choice.reason += f"; kept {config[choice.key]:,} B"
    return Recommendation(budget=budget, response=response, request=request, plugin_config=validate(config))
