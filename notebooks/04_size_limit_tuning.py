# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python (sp-istio-cache)
#     language: python
#     name: sp-istio-cache
# ---

# %% [markdown]
# # 04 · Size-limit tuning
#
# The filter copies a response body of up to `max_response_body_bytes` while it streams (and a
# request body of up to `max_request_body_bytes` for a lookup): larger bodies pass uncached. A
# higher limit caches more, and costs memory and latency in every sidecar. This notebook picks
# the largest measured size that, **with every smaller size**, stays within:
#
# - a **latency budget**: the p99 the filter adds over Envoy without it, at the worst hit ratio,
#   paired within each repetition (default +2 ms: about what a whole Istio sidecar adds at p90);
# - a **memory budget** at a stated concurrency: baseline memory + the filter's measured
#   overhead + 2 body copies × streams in flight × the limit ≤ the sidecar's limit (128 MiB).
#
# **A verdict that can say "I don't know".** The recommendation is *refused* — written with
# `"trusted": false`, the report exiting 3, `istio render` refusing it — when the cells it rests
# on are generator-limited or at the generator floor, unstable (an interval wider than ±20 %, or
# one straddling the budget), over the failure gate, repeated fewer than 3 times, or measured
# with another module than the one built. docs/report.md explains each rule.
#
# With a traffic profile (notebook 03's `profile` or `upstream`), the response limit is chosen
# for *your* mix: the share of responses cacheable under each candidate and the memory at the
# concurrency observed in the run.

# %% tags=["parameters"]
# the benchmark run to tune from; empty: this report's (out_dir/bench). Relative paths are from where you ran `report`.
run_dir: str = ""
# the sidecar's memory limit: the memory budget (bytes or 128Mi)
sidecar_memory_limit: str = "128Mi"
# the sidecar's CPU limit (cores), stated in the budget
sidecar_cpu_limit: float = 1.0
# streams in flight at once that may each buffer a body up to the limit
concurrency: int = 32
# allowed p99 added over the baseline, µs (null: not checked)
p99_added_budget_us: float = 2000.0
# allowed p99 ratio to the baseline (null: not checked)
p99_ratio_budget = None
# body copies held per stream at the peak
copies_per_stream: float = 2.0
# the verdict's rules: repetitions every cell needs, widest interval allowed (relative half-width)
min_repetitions: int = 3
max_ci_half_width: float = 0.20
# a plugin config (JSON) the limits are added to; empty: the schema defaults
base_plugin_config_file: str = ""
out_dir: str = "../reports/interactive"

# %%
from sp_istio_cache.report import tuning_step
from sp_istio_cache.report.steps import show

rec, figures = tuning_step.tuning_step(
    out_dir, run_dir, sidecar_memory_limit=sidecar_memory_limit, sidecar_cpu_limit=sidecar_cpu_limit,
    concurrency=concurrency, p99_added_budget_us=p99_added_budget_us, p99_ratio_budget=p99_ratio_budget,
    copies_per_stream=copies_per_stream, min_repetitions=min_repetitions, max_ci_half_width=max_ci_half_width,
    base_plugin_config_file=base_plugin_config_file)
print("\n".join(tuning_step.verdict_lines(rec)))

# %% [markdown]
# **Reading the verdict.** ACCEPTED means every cell the limit rests on (the sizes up to it, and
# the first size that did not pass) was repeated, stable, above the generator floor and within
# the failure gate. REFUSED lists each rule that failed with the cells to re-measure; the limits
# are printed for information only.

# %%
show(figures)

# %% [markdown]
# **Reading the tuning chart.** Left: for each candidate size, the added p99 of the worst cell
# (median of the paired repetitions, bars the interval), green when its whole interval is within
# the budget (dashed red), red when it lies above, orange when it straddles (the run cannot tell).
# The dotted line is the generator floor: a budget below it cannot be judged by Locust. Right:
# the predicted worst-case memory at the stated concurrency against the sidecar's limit. The
# vertical green line is the chosen limit.
#
# With a traffic profile the chart instead shows, per candidate limit, the share of your requests
# (and response bytes) the cache could hold, and the worst-case memory at the concurrency seen.
#
# **Decision it drives:** the `max_response_body_bytes` / `max_request_body_bytes` you deploy.
# `recommended_plugin_config.json` in the report holds them with the verdict;
# `sp-istio-cache istio render` deploys it only when `"trusted": true`.

# %%
rec.choices[0].table
