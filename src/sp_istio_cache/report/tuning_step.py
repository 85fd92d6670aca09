"""The tuning step (notebook 04): limits for a budget, the verdict on them, and their evidence.

Reads a run directory only. Writes ``recommended_plugin_config.json`` (the envelope ``istio
render`` reads: ``trusted``, ``verdict``, ``reason``, ``reasons``, ``plugin_config``; see
docs/deploy.md), ``tuning.json`` (every choice's per-size evidence and the rules), ``tuning.csv``
and the tuning charts. A refused recommendation is written too, marked refused: the step
itself passes (its evidence is the point), and the report exits 3 naming the reasons.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.charts import ChartError
from ..analysis.recommend import recommend
from ..analysis.results import load_run
from ..analysis.tuning import Budget, Recommendation
from ..analysis.tuning_charts import profile_chart, tuning_chart
from ..analysis.verdict import Rules
from ..runtime.docker import parse_memory as memory_bytes
from .identity import run_module_problem
from .steps import CHARTS, write_json

RECOMMENDATION_FILE = "recommended_plugin_config.json"


def tuning_step(out_dir: str | Path, run_dir: str | Path = "", *, sidecar_memory_limit: int | str = "128Mi",
                sidecar_cpu_limit: float | None = 1.0, concurrency: int = 32,
                p99_added_budget_us: float | None = 2000.0, p99_ratio_budget: float | None = None,
                copies_per_stream: float = 2.0, min_repetitions: int = 3, max_ci_half_width: float = 0.20,
                base_plugin_config_file: str = "") -> tuple[Recommendation, list[Path]]:
    """Recommend the body-size limits for the stated budget from a run's files and judge them
    (:mod:`sp_istio_cache.analysis.verdict`). ``run_dir`` defaults to ``out_dir/bench``.

    Raises:
        RecordError / ResultsError / SamplesError: the run's files are missing or malformed.
        ValueError: a nonsensical budget or rule (names it); PluginConfigError: a bad base config.
    """
    out = Path(out_dir)
    run = load_run(Path(run_dir) if run_dir else out / "bench")
    budget = Budget(memory_bytes=int(memory_bytes(sidecar_memory_limit) or 0), concurrency=int(concurrency),
                    p99_added_us=p99_added_budget_us, p99_ratio=p99_ratio_budget,
                    copies_per_stream=float(copies_per_stream), cpu_cores=sidecar_cpu_limit)
    rules = Rules(min_repetitions=int(min_repetitions), max_ci_half_width=float(max_ci_half_width),
                  max_error_rate=float(run.manifest.parameters.get("max_error_rate", Rules.max_error_rate)))
    base = json.loads(Path(base_plugin_config_file).read_text()) if base_plugin_config_file else None
    env = run.manifest.environment
    problem = run_module_problem(env.wasm_sha256, env.wasm_path, out)
    rec = recommend(run, budget, rules=rules, base_config=base, module_problem=problem)
    write_json(out / RECOMMENDATION_FILE, rec.envelope())
    write_json(out / "tuning.json", rec.as_dict())
    tables, pngs = [], []
    floor = run.cells.loc[run.cells["outcome"] == "ALL", "floor_p50_us_median"].max()
    for choice in rec.choices:
        if not choice.measured or choice.table.empty:
            continue
        tables.append(choice.table.assign(key=choice.key))
        name = f"tuning_{choice.key.removeprefix('max_').removesuffix('_body_bytes')}.png"
        try:
            if choice.axis == "profile":
                concurrency_seen = (rec.traffic or {}).get("observed_concurrency")
                pngs.append(profile_chart(choice, budget, out / CHARTS / name, concurrency=concurrency_seen))
            else:
                pngs.append(tuning_chart(choice, budget, out / CHARTS / name,
                                         floor_p50_us=None if pd.isna(floor) else float(floor)))
        except ChartError:
            continue
    if tables:
        pd.concat(tables).to_csv(out / "tuning.csv", index=False)
    return rec, pngs


def verdict_lines(rec: Recommendation) -> list[str]:
    """Sentences for the notebook: the verdict, each limit and why."""
    lines = [f"Verdict: {'ACCEPTED' if rec.trusted else 'REFUSED'}"]
    lines += [f"  refused because {r.code}: {r.message}" for r in rec.verdict.reasons]
    for choice in rec.choices:
        lines.append(f"{choice.key} = {rec.plugin_config.get(choice.key):,} B: {choice.reason}")
    return lines


def load_recommendation(report_dir: Path) -> dict[str, Any] | None:
    """The envelope a tuning step wrote in ``report_dir`` (None when it did not run)."""
    path = Path(report_dir) / RECOMMENDATION_FILE
    return json.loads(path.read_text()) if path.is_file() else None
