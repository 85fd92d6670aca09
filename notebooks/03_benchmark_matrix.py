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
# # 03 · Benchmark matrix
#
# Payload sizes × hit ratios × variants, each cell on a fresh stack with Locust in its own
# process:
#
# | variant | what it is | what it isolates |
# |---|---|---|
# | `floor` | Envoy answers by itself (no upstream, no filter) | the load generator's (Locust's) own latency |
# | `baseline` | Envoy without the filter | the reference of every ratio |
# | `filter-off` | the filter loaded, cache disabled | the cost of the Wasm VM on every request |
# | `filter` | the cache | lookup, store, hits |
# | `envoy-cache` | Envoy's own `envoy.filters.http.cache` | the in-proxy anchor a hit should approach |
#
# **Repetitions.** Every cell runs `repetitions` times, interleaved (repetition 1 of every
# variant of a point, then repetition 2, ...), so that drift on a shared machine hits all
# variants alike. Figures are medians over the repetitions with an order-statistic interval
# (with 3 repetitions: from the lowest to the highest, 75 % coverage); ratios are taken within
# a repetition, against the baseline measured in the same round.
#
# **Your service, your traffic.** Set `upstream` to benchmark your own HTTP service through
# Envoy (the baseline is Envoy without the filter in front of the same service), and `profile`
# to a traffic profile (CSV/YAML/JSON, or one made by `sp-istio-cache profile import` from an
# Envoy access log, a HAR file or the backend's store) to replay your mix of requests instead of
# sizes × hit ratios. `run_dir` re-charts an existing run without measuring.

# %% tags=["parameters"]
# auto (Docker with the sidecar limits when an engine answers, else local) | docker | local
runtime: str = "auto"
sidecar_cpu_limit: float = 1.0
sidecar_memory_limit: str = "128Mi"
envoy_path: str = ""
# variants of every point (the generator floor is always measured)
variants: list = ["baseline", "filter-off", "filter", "envoy-cache"]
# response body sizes (bytes)
payload_bytes: list = [1024, 65536, 262144]
# share of requests to keys the warm-up stored
hit_ratios: list = [0.0, 0.9]
# request body sizes (bytes); > 0 sends POST with that body (sizes max_request_body_bytes)
request_body_bytes: list = [0]
# origin latency (ms) the test upstream adds: a cache's value grows with it
upstream_delay_ms: list = [0.0]
# measurements of every cell, interleaved across variants
repetitions: int = 3
# closed-loop Locust users (or schedulers with a fixed rate)
users: int = 10
# measured seconds per cell
duration_s: float = 3.0
# fixed arrival rate (req/s over all users); 0 = closed loop
rate: float = 0.0
# Envoy worker threads
envoy_concurrency: int = 2
# largest share of failed requests a cell may have (the failure gate)
max_error_rate: float = 0.01
# benchmark this HTTP service instead of the test upstream (http://host:port)
upstream: str = ""
# traffic profile file replayed instead of sizes x hit ratios
profile: str = ""
# optional matrix YAML; the values above override its keys
matrix_file: str = ""
# an existing run directory to chart instead of measuring
run_dir: str = ""
out_dir: str = "../reports/interactive"

# %%
from sp_istio_cache.report import bench_step

if run_dir:
    run, figures, notes = bench_step.read_step(out_dir, run_dir)
else:
    run, figures, notes = bench_step.benchmark_step(
        out_dir, runtime=runtime, sidecar_cpu_limit=sidecar_cpu_limit, sidecar_memory_limit=sidecar_memory_limit,
        envoy_path=envoy_path, variants=variants, payload_bytes=payload_bytes, hit_ratios=hit_ratios,
        request_body_bytes=request_body_bytes, upstream_delay_ms=upstream_delay_ms, repetitions=repetitions,
        users=users, duration_s=duration_s, rate=rate, envoy_concurrency=envoy_concurrency,
        max_error_rate=max_error_rate, upstream=upstream, profile=profile, matrix_file=matrix_file)
for note in notes:
    print(note)
bench_step.cell_table(run)

# %% [markdown]
# **The table** has one row per cell: median over the repetitions and, in brackets, the interval
# of the repetitions. `floor p50` is the generator's own latency at that size: a cell whose p50 is
# not above it is measuring Locust, not Envoy.

# %%
from sp_istio_cache.report.steps import show

charts = {p.name: p for p in figures}
show([charts[n] for n in ("latency_vs_size.png", "profile_latency.png") if n in charts])

# %% [markdown]
# **Latency vs payload size.** Each point is the median of the repetitions, bars its interval; the
# dotted line is the generator floor, and hollow points sit at or below it. Read the gap between
# `baseline` and `filter h=0` (every request a miss: lookup, then upstream, then a store) and
# between `baseline` and `filter h=0.9` (mostly hits, answered without the upstream).
#
# **Decision it drives:** whether the filter's miss path is affordable at your sizes; the limit
# itself is chosen in notebook 04 from these same cells.

# %%
show([charts[n] for n in ("latency_ratio_vs_size.png",) if n in charts])

# %% [markdown]
# **Ratios to the baseline** cancel the machine: each is taken within one repetition. A ratio
# whose bar crosses 1 is *no measurable difference*. `filter-off` above 1 is the price of loading
# the Wasm VM at all; `filter` above `filter-off` is the price of the lookup and the store.

# %%
show([charts[n] for n in ("overhead_vs_size.png",) if n in charts])

# %% [markdown]
# **What the sidecar pays.** Left: Envoy's memory above the baseline's (process RSS locally, the
# container's working set under Docker) — the buffering the body-size limit allows grows it.
# Right: CPU time per request relative to the baseline's. **Decision it drives:** the memory
# budget of notebook 04 rests on this overhead.

# %%
show([charts[n] for n in ("outcome_latency_cdf.png",) if n in charts])

# %% [markdown]
# **Distribution by cache outcome.** Each curve is the share of requests answered within a
# latency (log scale), repetitions merged. HITs should sit left of the baseline (no upstream),
# MISSes right of it (the lookup first). A long MISS tail is the backend round trip under load.

# %%
show([charts[n] for n in ("filter_histograms.png",) if n in charts])
bench_step.counter_table(run)

# %% [markdown]
# **Below the generator floor.** Locust cannot resolve differences smaller than its own floor, so
# the filter's own timings from Envoy's `/stats` (`sp_cache.lookup_duration_us`: the backend round
# trip; `sp_cache.callback_duration_us`: time inside the filter per request) are shown here,
# median over repetitions. The counters table shows what went wrong quietly: `store_dropped`
# (stores not sent: too many in flight), `lookup_timeout` (the backend answered too late: fail
# open). Non-zero values there explain misses the hit ratio did not predict.
