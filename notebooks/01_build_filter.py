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
# # 01 · Build the filter
#
# The cache is a proxy-wasm filter written in Zig. This step compiles `filter/` with `zig build`
# (the `ziglang` package from PyPI, no system toolchain) into a **core** WebAssembly module for
# `wasm32-freestanding` — the only kind Envoy and Istio's `WasmPlugin` load — and records its
# SHA-256 beside it (`filter/dist/sp_istio_cache.wasm.sha256`).
#
# Every later step checks the module against that record: a module changed after the build is
# never benchmarked, recommended or deployed.

# %% tags=["parameters"]
# Zig optimize mode: ReleaseSafe keeps bounds and overflow checks (a bug traps instead of corrupting memory)
optimize: str = "ReleaseSafe"
# where this notebook writes its files (the report sets it)
out_dir: str = "../reports/interactive"

# %%
from sp_istio_cache.report import steps

build, figures = steps.build_step(out_dir, optimize=optimize)
build

# %% [markdown]
# **Reading it.** `sha256` is the digest to pin in an Istio `WasmPlugin` (`istio render` puts it
# there); `proxy_wasm_exports` shows the module speaks the proxy-wasm ABI 0.2.1 Envoy expects.

# %%
steps.show(figures)

# %% [markdown]
# **The chart** splits the module by section: `code` is the filter's compiled functions, `data`
# its constant tables, `custom:*` names and debug information. A module that grows by tens of
# KiB without a feature to show for it is worth a look: every Envoy worker instantiates it.
