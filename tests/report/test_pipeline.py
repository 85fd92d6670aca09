"""The report pipeline: typed parameters, statuses that cannot lie, failures that name the step,
figure check, interrupts, the notebooks as documents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from sp_istio_cache.paths import REPO_ROOT
from sp_istio_cache.report import params
from sp_istio_cache.report.notebooks import NOTEBOOKS, read_notebook, source_path
from sp_istio_cache.report.pipeline import ReportError, count_figures, declared_parameters, run_report

PROBE = '''\
# %% tags=["parameters"]
count: int = 1
sizes: list = [1]
ratio: float = 0.5
name: str = "x"
budget = None
sleep_s: float = 0.0
fail: bool = False
figure: bool = True
out_dir: str = "."

# %%
import json, pathlib, time
values = dict(count=count, sizes=sizes, ratio=ratio, name=name, budget=budget)
pathlib.Path(out_dir, "types.json").write_text(json.dumps(
    {k: [type(v).__name__, v, [type(x).__name__ for x in v] if isinstance(v, list) else None]
     for k, v in values.items()}))
try:
    if sleep_s:
        pathlib.Path(out_dir, "sleeping").write_text("")
    time.sleep(sleep_s)
except KeyboardInterrupt:
    pathlib.Path(out_dir, "cleaned-up").write_text("the cell saw the interrupt and cleaned up")
    raise

# %%
from sp_istio_cache.analysis.charts import bar_chart
from sp_istio_cache.report.steps import show
if figure:
    show(bar_chart(["a"], [1.0], path=pathlib.Path(out_dir, "probe.png"), title="t", xlabel="x"))

# %%
if fail:
    raise RuntimeError("boom in the probe")
'''


def probe(path: Path, name: str = "probe") -> Path:
    """A tiny notebook in percent format (the report's own source format)."""
    target = path / f"{name}.py"
    target.write_text(PROBE)
    return target


def report_json(report) -> dict:
    return json.loads((report.out_dir / "report.json").read_text())


def test_yaml_parameters_arrive_typed_and_a_passing_report_says_so(tmp_path):
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("count: 7\nsizes: [1024, 65536]\nratio: 0.25\nname: quick\n")
    values = params.load(str(yaml_file))
    values.update(params.parse_overrides(["budget=null", "count=9"]))
    report = run_report(values, tmp_path / "reports", notebooks=[probe(tmp_path)], progress="none")
    got = json.loads((report.out_dir / "types.json").read_text())
    assert got["count"] == ["int", 9, None]
    assert got["sizes"] == ["list", [1024, 65536], ["int", "int"]]
    assert got["ratio"] == ["float", 0.25, None]
    assert got["name"] == ["str", "quick", None]
    assert got["budget"] == ["NoneType", None, None]
    assert (report.status, report.exit_code) == ("passed", 0)
    assert report.headline.startswith("All 1 steps passed in ")
    assert report.steps[0].figures == 1
    assert (report.out_dir / "probe.ipynb").exists() and (report.out_dir / "probe.html").exists()
    html = (report.out_dir / "report.html").read_text()
    assert "data:image/png;base64" in html and f"SP-Istio Cache report {report.out_dir.name}" in html
    # a report for people: words, tables and charts; the code stays in probe.html / probe.ipynb
    code = '<span class="n">sleep_s</span>'
    assert code not in html and code in (report.out_dir / "probe.html").read_text()
    assert report_json(report)["status"] == "passed"
    latest = tmp_path / "reports" / "latest"
    assert latest.is_symlink() and latest.resolve() == report.out_dir


def test_a_failing_cell_names_notebook_and_cell_and_the_next_steps_did_not_run(tmp_path):
    first = probe(tmp_path, "a_first")
    (tmp_path / "b_second.py").write_text(PROBE)
    report = run_report({"fail": True}, tmp_path / "reports", notebooks=[first, tmp_path / "b_second.py"],
                        progress="none")
    assert (report.status, report.exit_code) == ("failed", 1)
    assert report.error.startswith("step a_first failed: cell 5 (index 4) raised RuntimeError: boom in the probe")
    assert [s.status for s in report.steps] == ["failed", "not-run"]
    doc = report_json(report)
    assert doc["status"] == "failed" and doc["exit_code"] == 1 and doc["not_run"] == ["b_second"]
    summary = (report.out_dir / "summary.md").read_text()
    assert "**FAILED: step a_first failed: cell 5 (index 4) raised RuntimeError: boom in the probe" in summary
    assert "passed" not in summary.split("| step |")[0]
    assert (report.out_dir / "a_first.ipynb").exists() and (report.out_dir / "a_first.html").exists()
    assert not (tmp_path / "reports" / "latest").exists()  # latest only moves to a report whose steps ran


def test_a_notebook_without_figures_fails_the_step(tmp_path):
    report = run_report({"figure": False}, tmp_path / "reports", notebooks=[probe(tmp_path)], progress="none")
    assert report.exit_code == 1
    assert report.error.startswith("step probe failed: the notebook produced no figures")


def test_an_only_run_is_partial_and_names_the_steps_that_did_not_run(tmp_path):
    first, second = probe(tmp_path, "a_first"), probe(tmp_path, "b_second")
    report = run_report({}, tmp_path / "reports", notebooks=[first, second], only=["b_second"], progress="none")
    assert (report.status, report.exit_code) == ("partial", 0)
    assert report.headline == "Partial report: ran b_second (1 of 2 steps, all passed); not run: a_first"
    assert [s.status for s in report.steps] == ["skipped", "passed"]
    summary = (report.out_dir / "summary.md").read_text()
    assert "All 2 steps passed" not in summary and "Partial report: ran b_second" in summary
    assert report_json(report)["not_run"] == ["a_first"]


def test_unknown_parameter_and_unknown_step_are_refused_naming_them(tmp_path):
    nb = probe(tmp_path)
    with pytest.raises(params.ParamsError, match=r"unknown report parameters \['cuont'\]"):
        run_report({"cuont": 3}, tmp_path / "reports", notebooks=[nb], progress="none")
    with pytest.raises(ReportError, match="step 09_nope failed: no such step; steps: probe"):
        run_report({}, tmp_path / "reports", notebooks=[nb], only=["09_nope"], progress="none")


def test_off_a_terminal_progress_is_one_line_per_step_with_elapsed_and_eta(tmp_path):
    from rich.console import Console

    log = tmp_path / "progress.log"
    with log.open("w") as f:
        run_report({}, tmp_path / "reports", notebooks=[probe(tmp_path, "a"), probe(tmp_path, "b")],
                   console=Console(file=f, width=200), progress="auto")
    lines = log.read_text().splitlines()
    assert lines[0].startswith("report: [1/2] a started  elapsed 0:0") and "ETA " in lines[0]
    assert lines[1].startswith("report: [1/2] a passed in 0:") and "1 figure(s)  elapsed" in lines[1]
    assert lines[3].startswith("report: [2/2] b passed in ") and lines[3].endswith("ETA 0:00")
    assert len(lines) == 4


DRIVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from rich.console import Console
    from sp_istio_cache.report.command import run
    code = run(sys.argv[1], ["sleep_s=120"], Path(sys.argv[2]), only=None, kernel="sp-istio-cache",
               progress="lines", console=Console(), err=Console(stderr=True),
               notebooks=[Path(sys.argv[3])])
    sys.exit(code)
""")


def _kernels_of(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_report_says_so_exits_130_and_leaves_no_kernel(tmp_path, signum):
    nb = probe(tmp_path)
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("count: 1\n")
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(yaml_file), str(tmp_path / "reports"), str(nb)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    kernels: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((tmp_path / "reports").glob("*/sleeping")):
            kernels = kernels or _kernels_of(proc.pid)
            time.sleep(0.3)
        kernels = kernels or _kernels_of(proc.pid)
        assert kernels, "the probe notebook never started"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    run = next(p for p in (tmp_path / "reports").iterdir() if p.name != "latest")
    doc = json.loads((run / "report.json").read_text())
    assert doc["status"] == "interrupted" and doc["exit_code"] == 130
    assert doc["steps"][0]["status"] == "interrupted"
    assert doc["headline"].startswith("INTERRUPTED during step probe after ")
    assert "**INTERRUPTED during step probe" in (run / "summary.md").read_text()
    assert "report interrupted (exit 130): INTERRUPTED during step probe" in " ".join(err.split())
    assert (run / "cleaned-up").exists(), err
    assert (run / "cleaned-up").read_text() == "the cell saw the interrupt and cleaned up"
    assert not (tmp_path / "reports" / "latest").exists()
    for k in kernels:
        try:
            k.wait(10)
        except psutil.NoSuchProcess:
            pass
        assert not k.is_running(), f"kernel {k.pid} survived the interrupt"


def test_relative_paths_resolve_from_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    got = params.resolve_paths({"run_dir": "reports/latest/bench", "matrix_file": "", "users": 3,
                                "profile": "/abs/p.csv"})
    assert got == {"run_dir": str(tmp_path / "reports/latest/bench"), "matrix_file": "", "users": 3,
                   "profile": "/abs/p.csv"}


def test_overrides_parse_as_yaml():
    assert params.parse_overrides(["users=5", "payload_bytes=[1024, 4096]", "runtime=docker", "x=1.5"]) == \
        {"users": 5, "payload_bytes": [1024, 4096], "runtime": "docker", "x": 1.5}
    with pytest.raises(params.ParamsError, match="key=value"):
        params.parse_overrides(["users"])


def test_the_notebooks_are_percent_scripts_without_outputs_and_with_one_parameters_cell(tmp_path):
    for name in NOTEBOOKS:
        path = source_path(name)
        assert path.suffix == ".py" and not path.with_suffix(".ipynb").exists()
        nb = read_notebook(path)
        nbformat.validate(nb)
        assert count_figures(nb) == 0
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and 'out_dir: str = "../reports/interactive"' in tagged[0].source
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {name[:2]} · ")
        markdown = [c for c in nb.cells if c.cell_type == "markdown"]
        assert len(markdown) >= 3, f"{name}: a chart without words on how to read it"
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and c is not tagged[0])
        assert "def " not in code and "class " not in code, f"{name}: logic belongs in the package"


def test_parameter_sets_only_use_declared_parameters(tmp_path):
    from sp_istio_cache.report.notebooks import materialize

    declared = {n: declared_parameters(materialize(source_path(n), tmp_path)) - {"out_dir"} for n in NOTEBOOKS}
    for name in params.named_sets():
        split = params.split_by_notebook(params.load(name), declared)
        assert isinstance(split["03_benchmark_matrix"]["payload_bytes"][0], int), name
        assert split["04_size_limit_tuning"]["sidecar_memory_limit"] == "128Mi", name
        assert split["03_benchmark_matrix"]["repetitions"] >= 3, name


@pytest.mark.envoy
def test_bad_envoy_path_fails_the_report_naming_the_smoke_step(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sp_istio_cache.cli", "report", "--params", "ci",
                          "-p", "envoy_path=/nonexistent/envoy", "-p", "runtime=local", "--only", "02_smoke",
                          "--out", str(tmp_path), "--progress", "lines"],
                         capture_output=True, text=True, timeout=240, cwd=REPO_ROOT,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 1, out.stdout + out.stderr
    err = " ".join(out.stderr.split())
    assert "report failed (exit 1): FAILED: step 02_smoke failed" in err
    assert "Envoy binary not found at /nonexistent/envoy" in err
    run = next(p for p in tmp_path.iterdir() if p.name != "latest")
    assert (run / "02_smoke.ipynb").exists()
    doc = json.loads((run / "report.json").read_text())
    assert doc["steps"][1]["status"] == "failed" and doc["status"] == "failed"


@pytest.mark.parametrize("override, message", [
    ({"users": "abc"}, r"report parameters: users: Input should be a valid integer"),
    ({"sidecar_memory_limit": "lots"},
     r"report parameters: sidecar_memory_limit: memory limit 'lots' is not a quantity"),
    ({"sidecar_cpu_limit": 0}, r"report parameters: sidecar_cpu_limit: 0 is not a number of cores > 0"),
])
def test_a_bad_benchmark_value_is_refused_before_any_step_runs(tmp_path, override, message):
    """Caught up front (exit 2), not by step 03 after the build and the smoke test ran."""
    with pytest.raises(params.ParamsError, match=message):
        run_report({**params.load("quick"), **override}, tmp_path / "reports", progress="none")
    assert not (tmp_path / "reports").exists()  # nothing ran, no report directory


def test_every_named_parameter_set_passes_the_up_front_check(tmp_path):
    from sp_istio_cache.report.bench_step import check_parameters
    from sp_istio_cache.report.notebooks import materialize

    declared = declared_parameters(materialize(source_path("03_benchmark_matrix"), tmp_path))
    for name in params.named_sets():
        check_parameters(**{k: v for k, v in params.load(name).items() if k in declared and k != "out_dir"})
