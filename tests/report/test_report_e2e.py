"""The whole report, for real: build the filter, smoke it through Envoy, benchmark a tiny matrix
with Locust (2 repetitions), tune — then the verdict refuses, because 2 repetitions are too few.

Envoy runs in Docker with the sidecar limits when an engine answers (else locally, and the
summary says the limits were not enforced). About a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from sp_istio_cache.paths import REPO_ROOT

TINY = ["-p", "payload_bytes=[1024]", "-p", "hit_ratios=[0.9]", "-p", "repetitions=2", "-p", "duration_s=1",
        "-p", "smoke_sizes=[1024]"]


@pytest.mark.envoy
@pytest.mark.timeout(900)
def test_the_real_pipeline_writes_every_file_and_refuses_two_repetitions(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sp_istio_cache.cli", "report", "--params", "ci", *TINY,
                          "--out", str(tmp_path), "--progress", "auto"],
                         capture_output=True, text=True, timeout=880, cwd=tmp_path,
                         env={**os.environ, "COLUMNS": "300"})
    err = " ".join(out.stderr.split())
    assert out.returncode == 3, out.stdout + out.stderr
    # other reasons may join it on a busy machine (e.g. no_size_meets_budget): timings are not asserted
    assert "report refused (exit 3): All 4 steps passed in " in err
    assert ("but the recommendation was REFUSED (too_few_repetitions" in err
            and "fewer than 3 measured repetitions: baseline-p1024-b0-h0.9-d0-u8 (2), filter-p1024-b0-h0.9-d0-u8 (2), "
                "floor-p1024-b0-u8 (2)" in err)
    # off a terminal: a line per step and per benchmark cell, with elapsed time and an ETA
    assert re.search(r"report: 03_benchmark_matrix cell 6/6 filter-p1024-b0-h0\.9-d0-u8 rep 2 (measured|failed)"
                     r".* elapsed \d+:\d\d ETA \d+:\d\d", err)
    assert "[IPKernelApp]" not in out.stderr and "Warning" not in out.stderr
    report = (tmp_path / "latest").resolve()
    doc = json.loads((report / "report.json").read_text())
    assert (doc["status"], doc["exit_code"]) == ("passed", 3)
    assert [s["status"] for s in doc["steps"]] == ["passed"] * 4
    env = json.loads((report / "recommended_plugin_config.json").read_text())
    assert (env["trusted"], env["verdict"]) == (False, "refused")
    assert [r["code"] for r in env["refusals"]][0] == "too_few_repetitions"
    assert env["module_sha256"] == json.loads((report / "build.json").read_text())["sha256"]
    runtime = json.loads((report / "runtime.json").read_text())
    summary = (report / "summary.md").read_text()
    assert summary.startswith(f"# SP-Istio Cache report {report.name}\n\n## Recommendation: REFUSED")
    if runtime["name"] == "docker":
        assert "Envoy ran in a Docker container limited to 1 CPU, 128 MiB: the sidecar budget was enforced" in summary
        cell_json = report / "bench" / "cells" / "filter-p1024-b0-h0.9-d0-u8" / "rep-1" / "cell.json"
        cells = json.loads(cell_json.read_text())
        assert cells["runtime"]["name"] == "docker" and cells["resources"]["memory_limit_bytes"] == 128 * 2**20
    else:
        assert "the sidecar limits (1 CPU, 128 MiB) were NOT enforced" in summary
    for name in ("wasm_sections", "smoke_latency", "latency_vs_size", "latency_ratio_vs_size", "overhead_vs_size",
                 "outcome_latency_cdf", "tuning_response"):
        assert (report / "charts" / f"{name}.png").stat().st_size > 5_000, name
    assert (report / "bench" / "results.parquet").exists() and (report / "bench" / "cells.csv").exists()
    html = (report / "report.html").read_text()
    assert html.index("Recommendation: REFUSED") < html.index("01 · Build the filter")
    assert REPO_ROOT.exists()
