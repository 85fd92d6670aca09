"""Choosing the filter's body-size limits from a run's repetitions, for a sidecar budget.

Input: a :class:`~sp_istio_cache.analysis.results.RunData` (per-repetition rows and per-cell
intervals) and a :class:`Budget`. One axis at a time: ``payload_bytes`` →
``max_response_body_bytes`` (GET cells), ``request_body_bytes`` → ``max_request_body_bytes``
(POST cells with a request body).

Per measured size *S* (:func:`evaluate`):

1. Every ``filter`` cell at *S* (each hit ratio, origin delay and load) is paired with the
   ``baseline`` cell of the same point **in the same repetition**; the added p99
   ``p99_filter − p99_baseline`` (µs) and the ratio ``p99_filter / p99_baseline`` are taken per
   repetition, then summarised as a median with an order-statistic interval
   (:func:`sp_istio_cache.bench.repetitions.median_ci`: with 3 repetitions [min, max], 75 %
   coverage).
2. Latency: *S* **passes** when every cell's interval lies within the budget, **fails** when
   some cell's interval lies entirely above it, and is **undecided** when an interval straddles
   it (the run cannot tell; the verdict calls that unstable). Both budgets (added µs, ratio) are
   applied when set.
3. Memory: *S* passes when :func:`worst_case_memory_bytes` ≤ the budget and Envoy was never
   OOM-killed in a repetition at *S*.

The limit (:func:`choose_limit`) is the largest *S* such that *S* and every smaller measured size
pass: a limit admits every smaller body, so a failing smaller size cannot be skipped. The choice
rests on the cells of every size up to the limit and of the first size that did not pass (it
is why the walk stopped); :mod:`sp_istio_cache.analysis.verdict` refuses the recommendation when
those cells are not good evidence.

Worst-case memory, in bytes::

    predicted(S) = rss_baseline(S) + max(0, rss_filter(S) − rss_baseline(S))
                   + copies_per_stream × concurrency × S

``rss_*`` are the highest ``rss_max_bytes`` over the repetitions (Envoy process RSS, or the
container's working set under Docker). The last term is the buffering the limit allows: the
filter holds a copy of a response body of up to the limit while it streams and encodes it once
more into the store call, two copies per stream at the peak (``copies_per_stream``); a held
request body is likewise copied into the lookup. The measured overhead already contains the
bench's own buffering, so the formula counts it twice: it errs on the safe side.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from ..bench.repetitions import median_ci
from .results import RunData

AXES = {"payload_bytes": "max_response_body_bytes", "request_body_bytes": "max_request_body_bytes"}
MIB = 1024 * 1024
#: the point columns a filter cell and its baseline share (besides the variant)
PAIR_COLUMNS = ["traffic", "payload_bytes", "request_body_bytes", "target_hit_ratio", "upstream_delay_ms", "mode",
                "users", "target_rate", "profile_name", "repetition"]


@dataclass(frozen=True)
class Budget:
    """What the sidecar may spend (defaults: docs/report.md says why).

    Attributes:
        memory_bytes: the sidecar's memory limit (128 MiB = 134217728).
        concurrency: streams in flight at once that may each buffer a body up to the limit.
        p99_added_us: allowed p99 added by the filter over the baseline, µs (None: not checked).
        p99_ratio: allowed p99 ratio filter / baseline (None: not checked).
        copies_per_stream: body copies held per stream at the peak (module docstring).
        cpu_cores: the sidecar's CPU limit (enforced by the docker runtime; stated otherwise).
    """

    memory_bytes: int = 128 * MIB
    concurrency: int = 32
    p99_added_us: float | None = 2000.0
    p99_ratio: float | None = None
    copies_per_stream: float = 2.0
    cpu_cores: float | None = 1.0

    def __post_init__(self) -> None:
        if self.p99_added_us is None and self.p99_ratio is None:
            raise ValueError("a latency budget is needed: p99_added_budget_us and/or p99_ratio_budget")
        if self.memory_bytes <= 0 or self.concurrency < 1 or self.copies_per_stream <= 0:
            raise ValueError("memory_budget_bytes, concurrency and copies_per_stream must be positive")
        if self.p99_added_us is not None and self.p99_added_us <= 0:
            raise ValueError(f"p99_added_budget_us must be positive, got {self.p99_added_us}")
        if self.p99_ratio is not None and self.p99_ratio <= 1:
            raise ValueError(f"p99_ratio_budget must be above 1, got {self.p99_ratio}")

    def describe(self) -> str:
        """One line, e.g. ``p99 +2,000 µs over the baseline; 128 MiB at 32 concurrent streams, 1 CPU``."""
        parts = []
        if self.p99_added_us is not None:
            parts.append(f"p99 +{self.p99_added_us:,.0f} µs over the baseline")
        if self.p99_ratio is not None:
            parts.append(f"p99 ×{self.p99_ratio:g} the baseline")
        cpu = f", {self.cpu_cores:g} CPU" if self.cpu_cores else ""
        return f"{' and '.join(parts)}; {self.memory_bytes / MIB:g} MiB at {self.concurrency} concurrent streams{cpu}"


def worst_case_memory_bytes(rss_baseline: float, rss_filter: float, size: float, budget: Budget,
                            concurrency: float | None = None) -> float:
    """``rss_baseline + max(0, rss_filter − rss_baseline) + copies × concurrency × size`` (bytes;
    ``concurrency`` defaults to the budget's)."""
    streams = budget.concurrency if concurrency is None else concurrency
    return rss_baseline + max(0.0, rss_filter - rss_baseline) + budget.copies_per_stream * streams * size


def paired(run: RunData, filter_mask: pd.Series) -> pd.DataFrame:
    """Filter ``ALL`` rows (measured, selected by ``filter_mask`` over ``run.rows``) joined with
    the baseline row of the same point and repetition: ``p99_added_us`` per repetition and the
    baseline's ``cell_id_base``, ``rss_max_bytes_base``, ``generator_limited_base``. A filter
    repetition without a measured baseline has NaN there."""
    rows = run.rows
    measured = rows[(rows["outcome"] == "ALL") & (rows["status"] == "measured")]
    filt = measured[filter_mask.reindex(measured.index, fill_value=False)]
    base = measured[measured["variant"] == "baseline"]
    keys = [c for c in PAIR_COLUMNS if c in rows.columns]
    base = base[[*keys, "cell_id", "p99_us", "rss_max_bytes"]].rename(
        columns={"cell_id": "cell_id_base", "p99_us": "p99_us_base", "rss_max_bytes": "rss_max_bytes_base"})
    out = filt.merge(base, on=keys, how="left", validate="many_to_one")
    out["p99_added_us"] = out["p99_us"] - out["p99_us_base"]
    return out


def _interval(values: pd.Series) -> tuple[float, float, float]:
    median, low, high, _level = median_ci(values.tolist(), 0.95)
    return median, low, high


def latency_status(cells: pd.DataFrame, budget: Budget) -> str:
    """``pass`` / ``fail`` / ``undecided`` of one size from its cells' intervals (module docstring)."""
    status = "pass"
    for low_col, high_col, limit in (("added_ci_low", "added_ci_high", budget.p99_added_us),
                                     ("ratio_ci_low", "ratio_ci_high", budget.p99_ratio)):
        if limit is None:
            continue
        if (cells[low_col] > limit).any():
            return "fail"
        if (cells[high_col] > limit).any():
            status = "undecided"
    return status


def cell_intervals(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per filter cell: the interval of its added p99 and p99 ratio over the paired
    repetitions, ``pairs`` (repetitions paired with a baseline), ``base_cell``."""
    out = []
    for cell_id, g in pairs.groupby("cell_id", sort=False):
        ok = g.dropna(subset=["p99_added_us"])
        added = _interval(ok["p99_added_us"])
        ratio = _interval(ok["p99_ratio"])
        out.append({"cell_id": cell_id, "base_cell": g["cell_id_base"].dropna().iloc[0] if ok.size else None,
                    "pairs": len(ok), "added_median": added[0], "added_ci_low": added[1],
                    "added_ci_high": added[2], "ratio_median": ratio[0], "ratio_ci_low": ratio[1],
                    "ratio_ci_high": ratio[2]})
    return pd.DataFrame(out)


def evaluate(run: RunData, budget: Budget, axis: str = "payload_bytes") -> pd.DataFrame:
    """One row per measured size of ``axis`` (columns listed in :data:`EVALUATION_COLUMNS`);
    empty when the run has no filter cell with ``axis`` > 0.

    Raises:
        ValueError: unknown axis.
    """
    if axis not in AXES:
        raise ValueError(f"axis must be one of {sorted(AXES)}, got {axis!r}")
    rows = run.rows
    other = "request_body_bytes" if axis == "payload_bytes" else "payload_bytes"
    mask = (rows["variant"] == "filter") & (rows["traffic"] == "synthetic") & (rows[axis].fillna(0) > 0)
    if axis == "payload_bytes":
        mask &= rows[other].fillna(0) == 0
    pairs = paired(run, mask)
    out = []
    for size, group in pairs.groupby(axis, sort=True):
        cells = cell_intervals(group)
        unpaired = sorted(cells.loc[cells["pairs"] == 0, "cell_id"])
        latency = "undecided" if unpaired else latency_status(cells.dropna(subset=["added_median"]), budget)
        rss_base = float(group["rss_max_bytes_base"].max())
        rss_filter = float(group["rss_max_bytes"].max())
        predicted = worst_case_memory_bytes(rss_base, rss_filter, float(size), budget)
        oom = bool(group["oom_killed"].astype(bool).any())
        meets_memory = bool(predicted <= budget.memory_bytes) and not oom
        worst = cells.sort_values("added_median", ascending=False, na_position="first").iloc[0]
        status = "fail" if latency == "fail" or not meets_memory else latency
        out.append({
            "size": int(size), "status": status, "latency": latency, "meets_memory": meets_memory, "oom": oom,
            "p99_added_us": worst["added_median"], "p99_added_ci_low": worst["added_ci_low"],
            "p99_added_ci_high": worst["added_ci_high"], "p99_ratio": worst["ratio_median"],
            "p99_ratio_ci_low": worst["ratio_ci_low"], "p99_ratio_ci_high": worst["ratio_ci_high"],
            "worst_cell": worst["cell_id"], "rss_baseline": rss_base, "rss_filter": rss_filter,
            "predicted_memory_bytes": predicted, "unpaired": ", ".join(unpaired),
            "cells": ", ".join(sorted(set(cells["cell_id"]))),
            "baselines": ", ".join(sorted(set(group["cell_id_base"].dropna()))),
        })
    return pd.DataFrame(out, columns=EVALUATION_COLUMNS)


EVALUATION_COLUMNS = ["size", "status", "latency", "meets_memory", "oom", "p99_added_us", "p99_added_ci_low",
                      "p99_added_ci_high", "p99_ratio", "p99_ratio_ci_low", "p99_ratio_ci_high", "worst_cell",
                      "rss_baseline", "rss_filter", "predicted_memory_bytes", "unpaired", "cells", "baselines"]


@dataclass
class Choice:
    """The limit for one axis, the evidence per size and the cells the choice rests on.

    ``limit`` None: nothing passed (``stop`` says why) or the axis was not measured
    (``measured`` False). ``stop`` is the evaluation row of the first size that did not pass
    (None when every size passed). ``rests_on``: the filter and baseline cells of every size up
    to the limit and of ``stop``.
    """

    axis: str
    key: str
    limit: int | None
    measured: bool
    reason: str
    table: pd.DataFrame = field(repr=False)
    stop: dict[str, Any] | None = None
    rests_on: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"axis": self.axis, "key": self.key, "limit": self.limit, "measured": self.measured,
                "reason": self.reason, "stop": self.stop, "rests_on": self.rests_on, "sizes": records(self.table)}


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Table rows as JSON-ready dicts (NaN → None, numpy scalars → Python)."""
    out = []
    for rec in table.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else (v.item() if hasattr(v, "item") else v))
                    for k, v in rec.items()})
    return out


def miss_reason(row: dict[str, Any], budget: Budget) -> str:
    """Why a size did not pass, one clause per budget."""
    why = []
    if row["latency"] == "fail":
        why.append(f"p99 +{row['p99_added_us']:,.0f} µs (×{row['p99_ratio']:.2f}; interval "
                   f"{row['p99_added_ci_low']:,.0f}–{row['p99_added_ci_high']:,.0f} µs) in {row['worst_cell']}")
    elif row["latency"] == "undecided":
        why.append(f"the added p99 interval {row['p99_added_ci_low']:,.0f}–{row['p99_added_ci_high']:,.0f} µs "
                   f"straddles the budget in {row['worst_cell']}" if not row["unpaired"]
                   else f"no baseline repetition to compare {row['unpaired']} with")
    if row["oom"]:
        why.append("Envoy was OOM-killed")
    elif not row["meets_memory"]:
        why.append(f"worst case {row['predicted_memory_bytes'] / MIB:,.1f} MiB > {budget.memory_bytes / MIB:g} MiB")
    return " and ".join(why)


def choose_limit(run: RunData, budget: Budget, axis: str = "payload_bytes") -> Choice:
    """The largest measured size of ``axis`` that, with every smaller size, passes (module
    docstring). Never raises for the data's sake: the verdict judges the choice."""
    key = AXES[axis]
    table = evaluate(run, budget, axis)
    if table.empty:
        return Choice(axis, key, None, False, f"no filter cell with {axis} > 0 in this run: not measured", table)
    chosen: int | None = None
    stop: dict[str, Any] | None = None
    rests: list[str] = []
    for row in records(table):
        rests += [c for c in (row["cells"] + ", " + row["baselines"]).split(", ") if c]
        if row["status"] != "pass":
            stop = row
            break
        chosen = int(row["size"])
    if chosen is None:
        assert stop is not None  # the loop stops at the first size that did not pass
        reason = (f"even the smallest measured size ({stop['size']:,} B) does not pass the budget "
                  f"({budget.describe()}): {miss_reason(stop, budget)}")
    elif stop is None:
        reason = (f"{chosen:,} B is the largest measured size and every measured size passes the budget "
                  f"({budget.describe()}); larger bodies were not measured")
    else:
        reason = (f"{chosen:,} B is the largest measured size passing the budget ({budget.describe()}); "
                  f"the next size, {stop['size']:,} B, does not: {miss_reason(stop, budget)}")
    return Choice(axis, key, chosen, True, reason, table, stop, sorted(set(rests)))


@dataclass
class Recommendation:
    """The plugin configuration to deploy, the choices behind it and the verdict on them."""

    budget: Budget
    choices: list[Choice]
    plugin_config: dict[str, Any]
    verdict: Any  # verdict.Verdict
    module_sha256: str | None = None
    run_dir: str = ""
    traffic: dict[str, Any] | None = None

    @property
    def trusted(self) -> bool:
        return bool(self.verdict.accepted)

    def choice(self, key: str) -> Choice | None:
        return next((c for c in self.choices if c.key == key), None)

    def envelope(self) -> dict[str, Any]:
        """``recommended_plugin_config.json``: the fields ``istio render`` reads (``trusted``,
        ``verdict``, ``reason``, ``reasons``, ``plugin_config``; docs/deploy.md) and the evidence."""
        return {"schema": "sp-istio-cache/recommendation/1", "trusted": self.trusted,
                "verdict": "accepted" if self.trusted else "refused",
                "reason": self.verdict.summary(), "reasons": [r.message for r in self.verdict.reasons],
                "refusals": [r.as_dict() for r in self.verdict.reasons],
                "plugin_config": self.plugin_config, "budget": asdict(self.budget),
                "module_sha256": self.module_sha256, "run_dir": self.run_dir,
                "limits": {c.key: {"limit": c.limit, "measured": c.measured, "reason": c.reason}
                           for c in self.choices}}

    def as_dict(self) -> dict[str, Any]:
        """``tuning.json``: the envelope plus every choice's per-size evidence."""
        return {**self.envelope(), "choices": [c.as_dict() for c in self.choices], "traffic": self.traffic,
                "rules": asdict(self.verdict.rules)}


def plugin_config_for(choices: list[Choice], base_config: dict[str, Any] | None) -> dict[str, Any]:
    """``base_config`` with each chosen limit; an axis without a limit keeps the base value, else
    the schema default (its reason says so). Validated against the filter's schema.

    Raises:
        PluginConfigError: the result is not a valid configuration.
    """
    from ..pluginconfig import defaults, validate

    config = dict(base_config or {})
    for choice in choices:
        if choice.limit is not None:
            config[choice.key] = choice.limit
        else:
            config.setdefault(choice.key, defaults()[choice.key])
            if not choice.measured:
                choice.reason += f"; kept {config[choice.key]:,} B"
    return validate(config)
