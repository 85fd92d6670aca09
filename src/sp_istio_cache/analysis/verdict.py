"""Whether a size-limit recommendation may be trusted: the rules, each with a named reason.

A recommendation is **refused** (never printed as a result) when any rule below fails for the
cells it rests on (:attr:`sp_istio_cache.analysis.tuning.Choice.rests_on`: the filter and
baseline cells of every size up to the limit and of the first size that did not pass). Each
failing rule adds one :class:`Reason` whose ``code`` is stable (tests, ``istio render`` and
people key on it):

=========================  ============================================================================
code                       refused when
=========================  ============================================================================
``not_measured``           no axis was measured: the run has no filter cell with a body
``run_incomplete``         ``run.json`` status is not ``complete`` (interrupted or failed run)
``too_few_repetitions``    a cell it rests on has fewer than ``min_repetitions`` measured repetitions
                           (default 3: fewer gives no interval worth the name)
``error_rate``             a repetition of such a cell fails the failure gate: error rate over
                           ``max_error_rate`` (the run's ``--max-error-rate``, default 1 %), every
                           request failed, or nothing was measured
``no_floor``               the run has no generator floor for such a cell: no claim can be checked
                           against the load generator's own latency
``generator_limited``      the bench flagged a repetition (Locust CPU warning, ≥ 90 % of a core,
                           < 90 % of the target rate, short load), or a baseline cell is not
                           faster-separated from the floor: its p50 interval does not lie above the
                           floor's, so it measures Locust rather than Envoy
``budget_below_floor``     the added-latency budget is below the floor's p50: Locust cannot resolve
                           a difference that small (judge it with the filter's own histograms)
``unstable``               a filter cell's p99 ratio interval is wider than ``max_ci_half_width``
                           (default ±20 % of its median), or the size that decided the limit has an
                           added-p99 interval straddling the budget
``no_size_meets_budget``   even the smallest measured size misses the budget
``module_mismatch``        the run's filter module is not the one the report's build recorded
=========================  ============================================================================

Thresholds live in :class:`Rules`; docs/report.md explains the defaults.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from .results import RunData

REASON_CODES = ("not_measured", "run_incomplete", "too_few_repetitions", "error_rate", "no_floor",
                "generator_limited", "budget_below_floor", "unstable", "no_size_meets_budget", "module_mismatch")


@dataclass(frozen=True)
class Rules:
    """Thresholds of the verdict.

    Attributes:
        min_repetitions: measured repetitions every cell the choice rests on needs (≥ 1).
        max_ci_half_width: largest half-width of a filter cell's p99-ratio interval, relative to
            its median (0.20 = ±20 %).
        max_error_rate: the failure gate's limit (share of non-2xx or unanswered requests).
    """

    min_repetitions: int = 3
    max_ci_half_width: float = 0.20
    max_error_rate: float = 0.01

    def __post_init__(self) -> None:
        if self.min_repetitions < 1:
            raise ValueError(f"min_repetitions must be at least 1, got {self.min_repetitions}")
        if not 0 < self.max_ci_half_width < 10:
            raise ValueError(f"max_ci_half_width must be within (0, 10), got {self.max_ci_half_width}")
        if not 0 <= self.max_error_rate <= 1:
            raise ValueError(f"max_error_rate must be within 0..1, got {self.max_error_rate}")


@dataclass(frozen=True)
class Reason:
    """One failed rule: ``code`` (one of :data:`REASON_CODES`) and a sentence naming the cells."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Verdict:
    """``accepted`` when no rule failed; ``reasons`` otherwise (in rule order)."""

    rules: Rules
    reasons: list[Reason] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.reasons

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    def add(self, code: str, message: str) -> None:
        if code not in REASON_CODES:
            raise ValueError(f"unknown reason code {code!r}")
        self.reasons.append(Reason(code, message))

    def summary(self) -> str:
        """One line: ``accepted`` or ``refused: <code>: <message>; ...``."""
        if self.accepted:
            return "accepted: every cell it rests on is repeated, stable, above the generator floor and passes the gate"
        return "refused: " + "; ".join(f"{r.code}: {r.message}" for r in self.reasons)


def _cells_text(cells: list[str], limit: int = 4, sep: str = ", ") -> str:
    shown = sep.join(cells[:limit])
    return shown + (f" and {len(cells) - limit} more" if len(cells) > limit else "")


def _measured_reps(run: RunData, cells: list[str]) -> dict[str, int]:
    rows = run.rows[(run.rows["outcome"] == "ALL") & run.rows["cell_id"].isin(cells)]
    counts = rows[rows["status"] == "measured"].groupby("cell_id").size()
    return {c: int(counts.get(c, 0)) for c in cells}


def _gate(run: RunData, cells: list[str], rules: Rules) -> list[str]:
    """Gate lines (``<cell> rep <n>: why``) of the repetitions of ``cells`` that fail it."""
    rows = run.rows[(run.rows["outcome"] == "ALL") & run.rows["cell_id"].isin(cells)]
    out = []
    for _, r in rows.iterrows():
        if r["status"] == "failed":
            out.append(f"{r['cell_id']} rep {r['repetition']}: measured nothing")
        elif r["cell_requests"] == 0:
            out.append(f"{r['cell_id']} rep {r['repetition']}: Locust recorded no request")
        elif r["non_2xx"] == r["cell_requests"]:
            out.append(f"{r['cell_id']} rep {r['repetition']}: every request failed ({r['cell_requests']} requests)")
        elif r["error_rate"] > rules.max_error_rate:
            out.append(f"{r['cell_id']} rep {r['repetition']}: {r['error_rate']:.1%} of {r['cell_requests']} "
                       f"requests failed (non-2xx or no response), over the gate's {rules.max_error_rate:.1%}")
    return out


def _limited(run: RunData, cells: list[str]) -> list[str]:
    rows = run.rows[(run.rows["outcome"] == "ALL") & run.rows["cell_id"].isin(cells)
                    & run.rows["generator_limited"].astype(bool)]
    return [f"{r['cell_id']} rep {r['repetition']} ({r['generator_reason']})" for _, r in rows.iterrows()]


def _summaries(run: RunData, cells: list[str]) -> pd.DataFrame:
    return run.cells[(run.cells["outcome"] == "ALL") & run.cells["cell_id"].isin(cells)]


def _floor_checks(verdict: Verdict, run: RunData, cells: list[str], budget: Any) -> None:
    summary = _summaries(run, cells)
    no_floor = sorted(summary.loc[summary["floor_cell"].isna(), "cell_id"])
    if no_floor:
        verdict.add("no_floor", f"no generator floor was measured for {_cells_text(no_floor)}; the run cannot show "
                                "its latencies are Envoy's and not the load generator's")
        return
    base = summary[summary["variant"] == "baseline"]
    at_floor = base[~(base["p50_us_ci_low"] > base["floor_p50_us_ci_high"])]
    limited = _limited(run, cells)
    if at_floor.size:
        limited += [f"{r['cell_id']} (p50 {r['p50_us_ci_low']:,.0f}–{r['p50_us_ci_high']:,.0f} µs is not above the "
                    f"floor's {r['floor_p50_us_ci_low']:,.0f}–{r['floor_p50_us_ci_high']:,.0f} µs)"
                    for _, r in at_floor.iterrows()]
    if limited:
        verdict.add("generator_limited", f"the load generator, not Envoy, bounded {_cells_text(limited)}: re-run with "
                                         "fewer users, a fixed --rate or more Locust --processes")
    floor_p50 = float(summary["floor_p50_us_median"].max())
    if budget.p99_added_us is not None and budget.p99_added_us < floor_p50:
        verdict.add("budget_below_floor", f"the latency budget +{budget.p99_added_us:,.0f} µs is below the generator "
                                          f"floor's p50 ({floor_p50:,.0f} µs): Locust cannot resolve it; read the "
                                          "filter's own histograms (sp_cache.callback_duration_us) instead")


def _stability(verdict: Verdict, run: RunData, cells: list[str], stops: list[dict[str, Any]]) -> None:
    rules = verdict.rules
    filt = _summaries(run, cells)
    filt = filt[filt["variant"] == "filter"]
    wide = []
    for _, r in filt.iterrows():
        med, low, high = r.get("p99_ratio_median"), r.get("p99_ratio_ci_low"), r.get("p99_ratio_ci_high")
        if med is None or any(isinstance(v, float) and math.isnan(v) for v in (med, low, high)) or med <= 0:
            continue
        half = (high - low) / 2 / med
        if half > rules.max_ci_half_width:
            wide.append(f"{r['cell_id']} (p99 ratio {med:.2f}, interval {low:.2f}–{high:.2f}: ±{half:.0%})")
    undecided = [f"{s['size']:,} B ({s['worst_cell']}: added p99 {s['p99_added_ci_low']:,.0f}–"
                 f"{s['p99_added_ci_high']:,.0f} µs straddles the budget)" for s in stops
                 if s["latency"] == "undecided" and not s["unpaired"]]
    unpaired = [f"{s['size']:,} B ({s['unpaired']} has no baseline repetition to pair with)" for s in stops
                if s["unpaired"]]
    if wide:
        verdict.add("unstable", f"intervals wider than ±{rules.max_ci_half_width:.0%}: {_cells_text(wide)}")
    if undecided or unpaired:
        verdict.add("unstable", "the run cannot tell whether the limit should stop below "
                                + "; ".join(undecided + unpaired))


def judge(run: RunData, choices: list[Any], budget: Any, rules: Rules | None = None,
          module_problem: str | None = None) -> Verdict:
    """Apply every rule (module docstring) to the choices of one run."""
    verdict = Verdict(rules or Rules())
    measured = [c for c in choices if c.measured]
    if not measured:
        verdict.add("not_measured", "the run has no filter cell with a body to size a limit on")
    if run.manifest.status != "complete":
        why = f" ({run.manifest.error})" if run.manifest.error else ""
        verdict.add("run_incomplete", f"the run's status is {run.manifest.status}{why}, not complete")
    cells = sorted({c for choice in measured for c in choice.rests_on})
    stops = [c.stop for c in measured if c.stop is not None]
    if cells:
        floors = sorted(set(_summaries(run, cells)["floor_cell"].dropna()))
        reps = _measured_reps(run, cells + floors)
        few = [f"{c} ({n})" for c, n in reps.items() if n < verdict.rules.min_repetitions]
        if few:
            verdict.add("too_few_repetitions", f"fewer than {verdict.rules.min_repetitions} measured repetitions: "
                                               f"{_cells_text(few)}")
        gate = _gate(run, cells + floors, verdict.rules)
        if gate:
            verdict.add("error_rate", _cells_text(gate, sep="; "))
        _floor_checks(verdict, run, cells, budget)
        _stability(verdict, run, cells, stops)
    for choice in measured:
        if choice.limit is None and choice.stop is not None and choice.stop["status"] == "fail":
            verdict.add("no_size_meets_budget", f"{choice.key}: {choice.reason}")
    if module_problem:
        verdict.add("module_mismatch", module_problem)
    return verdict
