"""The report pipeline: typed parameters, failures that name the step, figure check, notebooks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from sp_istio_cache.paths import REPO_ROOT
from sp_istio_cache.report import notebooks, params
from sp_istio_cache.report.pipeline import NOTEBOOKS, ReportError, count_figures, run_report

PARAMS_CELL = 'count: int = 1\nsizes: list = [1]\nratio: float = 0.5\nname: str = "x"\nbudget = None\nout_dir: str = "."'
PROBE_CELL = """import json, pathlib
from sp_istio_cache.analysis.charts import bar_chart
from sp_istio_cache.report.steps import show
values = dict(count=count, sizes=sizes, ratio=ratio, name=name, budget=budget)
pathlib.Path(out_dir, "types.json").write_text(json.dumps(
    {k: [type(v).__name__, v, [type(x).__name__ for x in v] if isinstance(v, list) else None] for k, v in values.items()}))
"""
FIGURE_CELL = 'show(bar_chart(["a"], [1.0], path=pathlib.Path(out_dir, "probe.png"), title="t", xlabel="x"))'


def tiny_notebook(path: Path, *, figure: bool = True, fail: bool = False) -> Path:
    cells = [new_code_cell(PARAMS_CELL, metadata={"tags": ["parameters"]}), new_code_cell(PROBE_CELL)]
    if figure:
        cells.append(new_code_cell(FIGURE_CELL))
    if fail:
        cells.append(new_code_cell('raise RuntimeError("boom in the probe")'))
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nbformat.write(nb, path)
    return path


def test_yaml_parameters_arrive_typed(tmp_path):
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("count: 7\nsizes: [1024, 65536]\nratio: 0.25\nname: quick\n")
    values = params.load(str(yaml_file))
    values.update(params.parse_overrides(["budget=null", "count=9"]))
    nb = tiny_notebook(tmp_path / "probe.ipynb")
    report = run_report(values, tmp_path / "reports", notebooks=[nb], progress=False)
    got = json.loads((report.out_dir / "types.json").read_text())
    assert got["count"] == ["int", 9, None]
    assert got["sizes"] == ["list", [1024, 65536], ["int", "int"]]
    assert got["ratio"] == ["float", 0.25, None]
    assert got["name"] == ["str", "quick", None]
    assert got["budget"] == ["NoneType", None, None]
    assert report.ok and report.steps[0].figures == 1
    assert (report.out_dir / "probe.ipynb").exists() and (report.out_dir / "probe.html").exists()
    assert "data:image/png;base64" in (report.out_dir / "report.html").read_text()
    latest = tmp_path / "reports" / "latest"
    assert latest.is_symlink() and latest.resolve() == report.out_dir


def test_cell_error_names_notebook_and_cell_and_keeps_the_executed_notebook(tmp_path):
    nb = tiny_notebook(tmp_path / "probe.ipynb", fail=True)
    with pytest.raises(ReportError) as info:
        run_report({}, tmp_path / "reports", notebooks=[nb], progress=False)
    message = str(info.value)
    assert message.startswith("step probe failed: cell 5 (index 4) ")  # papermill adds the injected-parameters cell
    assert "RuntimeError: boom in the probe" in message
    assert info.value.step == "probe"
    executed = info.value.report_dir / "probe.ipynb"
    assert executed.exists() and (info.value.report_dir / "probe.html").exists()
    assert "boom in the probe" in (info.value.report_dir / "summary.md").read_text()
    assert not (tmp_path / "reports" / "latest").exists()  # latest only moves to a passing report


def test_notebook_without_figures_fails_the_step(tmp_path):
    nb = tiny_notebook(tmp_path / "probe.ipynb", figure=False)
    with pytest.raises(ReportError, match="step probe failed: the notebook produced no figures"):
        run_report({}, tmp_path / "reports", notebooks=[nb], progress=False)


def test_unknown_parameter_is_refused_naming_it(tmp_path):
    nb = tiny_notebook(tmp_path / "probe.ipynb")
    with pytest.raises(params.ParamsError, match=r"unknown report parameters \['cuont'\]"):
        run_report({"cuont": 3}, tmp_path / "reports", notebooks=[nb], progress=False)


def test_overrides_parse_as_yaml():
    assert params.parse_overrides(["users=5", "payload_bytes=[1024, 4096]", "runtime=docker", "x=1.5"]) == \
        {"users": 5, "payload_bytes": [1024, 4096], "runtime": "docker", "x": 1.5}
    with pytest.raises(params.ParamsError, match="key=value"):
        params.parse_overrides(["users"])


@pytest.mark.envoy
def test_bad_envoy_path_fails_the_report_naming_the_smoke_step(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sp_istio_cache.cli", "report", "--params", "ci",
                          "-p", "envoy_path=/nonexistent/envoy", "--only", "02_smoke", "--out", str(tmp_path),
                          "--no-progress"], capture_output=True, text=True, timeout=240, cwd=REPO_ROOT)
    assert out.returncode == 1, out.stdout + out.stderr
    err = " ".join(out.stderr.split())
    assert "step 02_smoke failed" in err
    assert "Envoy binary not found at /nonexistent/envoy" in err
    run = next(p for p in tmp_path.iterdir() if p.name != "latest")
    assert (run / "02_smoke.ipynb").exists()
    assert json.loads((run / "report.json").read_text())["steps"][1]["status"] == "failed"


def test_committed_notebooks_match_the_generator_and_carry_no_outputs():
    for name in NOTEBOOKS:
        path = REPO_ROOT / "notebooks" / f"{name}.ipynb"
        assert path.read_text() == notebooks.render(name), f"{path} differs: run python -m sp_istio_cache.report.notebooks"
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert count_figures(nb) == 0
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "out_dir: str" in tagged[0].source


def test_parameter_sets_only_use_declared_parameters():
    from sp_istio_cache.report.pipeline import INJECTED, declared_parameters

    declared = {n: declared_parameters(REPO_ROOT / "notebooks" / f"{n}.ipynb") - set(INJECTED) for n in NOTEBOOKS}
    for name in params.named_sets():
        split = params.split_by_notebook(params.load(name), declared)
        assert isinstance(split["03_benchmark_matrix"]["payload_bytes"][0], int), name
