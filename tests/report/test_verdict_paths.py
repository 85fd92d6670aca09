"""Every verdict path through the real tuning notebook and the ``report`` command: the exact exit
code, the headline and what ``recommended_plugin_config.json`` tells ``istio render``.

The runs are synthetic (written through the bench contract's models); the notebook, papermill,
the kernel and the command are the real ones, invoked as a user would:
``report --only 04_size_limit_tuning -p run_dir=<relative path>`` from the directory holding it.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from sp_istio_cache.report import command
from sp_istio_cache.report.identity import IstioConfigError, run_module_problem, verify_module

from .synthetic import KIB, sized_run

SIZES = {1 * KIB: (1500, 1200), 64 * KIB: (2500, 1800), 256 * KIB: (4000, 2000)}
NOT_RUN = "not run: 01_build_filter, 02_smoke, 03_benchmark_matrix"


def module(directory: Path, *, tamper: bool = False) -> tuple[Path, str]:
    """A stand-in module file with its build record (tampered: changed after the record)."""
    directory.mkdir(parents=True, exist_ok=True)
    wasm = directory / "sp_istio_cache.wasm"
    wasm.write_bytes(b"\0asm\x01\0\0\0" + b"built")
    digest = hashlib.sha256(wasm.read_bytes()).hexdigest()
    (directory / "sp_istio_cache.wasm.sha256").write_text(f"{digest}  sp_istio_cache.wasm\n")
    if tamper:
        wasm.write_bytes(b"\0asm\x01\0\0\0" + b"tampered")
    return wasm, digest


def report(tmp_path: Path, monkeypatch, *, tamper: bool = False, overrides=(), **run_kw):
    wasm, digest = module(tmp_path / "dist", tamper=tamper)
    sized_run(tmp_path / "runs" / "run", run_kw.pop("spec", SIZES), wasm_path=str(wasm), wasm_sha256=digest, **run_kw)
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    code = command.run("ci", ["run_dir=runs/run", "concurrency=8", *overrides], tmp_path / "reports",
                       only="04_size_limit_tuning", kernel="sp-istio-cache", progress="lines",
                       console=Console(file=out, width=400), err=Console(file=err, width=400))
    run = next(p for p in (tmp_path / "reports").iterdir() if p.name != "latest")
    env = json.loads((run / "recommended_plugin_config.json").read_text())
    return code, " ".join(err.getvalue().split()), env, run


def test_an_accepted_recommendation_exits_0_and_render_may_deploy_it(tmp_path, monkeypatch):
    code, err, env, run = report(tmp_path, monkeypatch)
    assert code == 0, err
    assert (f"report partial (exit 0): Partial report: ran 04_size_limit_tuning (1 of 4 steps, all passed); "
            f"{NOT_RUN}") in err
    assert (env["trusted"], env["verdict"], env["reasons"]) == (True, "accepted", [])
    assert env["plugin_config"]["max_response_body_bytes"] == 65536
    assert env["run_dir"] == str(tmp_path / "runs" / "run")  # resolved from the current directory
    summary = (run / "summary.md").read_text()
    assert summary.startswith(f"# SP-Istio Cache report {run.name}\n\n## Recommendation: ACCEPTED")
    assert "**`max_response_body_bytes` = 65,536 B**" in summary
    assert "All 4 steps passed" not in summary
    assert (tmp_path / "reports" / "latest").resolve() == run
    assert (run / "charts" / "tuning_response.png").stat().st_size > 10_000


def test_generator_limited_cells_refuse_with_exit_3(tmp_path, monkeypatch):
    code, err, env, run = report(tmp_path, monkeypatch, limited={("baseline", 64 * KIB)})
    assert code == 3, err
    assert ("report refused (exit 3): Partial report: ran 04_size_limit_tuning (1 of 4 steps, all passed); "
            f"{NOT_RUN}, but the recommendation was REFUSED (generator_limited): the load generator, not Envoy, "
            "bounded baseline-p65536-b0-h0-d0-u10 rep 2 (locust CPU warning)") in err
    assert (env["trusted"], env["verdict"]) == (False, "refused")
    assert [r["code"] for r in env["refusals"]] == ["generator_limited"]
    assert "## Recommendation: REFUSED" in (run / "summary.md").read_text()
    # the newest verdict is what `istio render` reads: latest moves to a refused report too
    assert (tmp_path / "reports" / "latest").resolve() == run


def test_unstable_cells_refuse_with_exit_3(tmp_path, monkeypatch):
    code, err, env, _ = report(tmp_path, monkeypatch, jitter=0.3,
                               spec={1 * KIB: (1500, 1200), 64 * KIB: (2000, 1800), 256 * KIB: (6000, 2000)})
    assert code == 3, err
    assert ("but the recommendation was REFUSED (unstable): intervals wider than ±20%: filter-p1024-b0-h0-d0-u10 "
            "(p99 ratio 1.50, interval 1.05–1.95: ±30%)") in err
    assert env["trusted"] is False and env["refusals"][0]["code"] == "unstable"


def test_an_error_rate_over_the_gate_refuses_with_exit_3(tmp_path, monkeypatch):
    code, err, env, _ = report(tmp_path, monkeypatch, errors={("filter", 64 * KIB): 4})
    assert code == 3, err
    assert ("but the recommendation was REFUSED (error_rate): filter-p65536-b0-h0-d0-u10 rep 2: 2.0% of 200 "
            "requests failed (non-2xx or no response), over the gate's 1.0%") in err
    assert env["reason"].startswith("refused: error_rate: filter-p65536-b0-h0-d0-u10 rep 2: 2.0% of 200 requests")


def test_a_module_changed_after_its_build_refuses_with_exit_3(tmp_path, monkeypatch):
    code, err, env, _ = report(tmp_path, monkeypatch, tamper=True)
    assert code == 3, err
    wasm = tmp_path / "dist" / "sp_istio_cache.wasm"
    actual = hashlib.sha256(wasm.read_bytes()).hexdigest()
    assert (f"but the recommendation was REFUSED (module_mismatch): module: {wasm} has sha256 {actual}, but its "
            f"build record {wasm}.sha256 says ") in err
    assert env["refusals"][0]["code"] == "module_mismatch"


def test_a_missing_run_dir_fails_the_step_naming_the_resolved_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    code = command.run("ci", ["run_dir=nowhere/bench"], tmp_path / "reports", only="04_size_limit_tuning",
                       kernel="sp-istio-cache", progress="none", console=Console(file=io.StringIO()),
                       err=Console(file=err, width=400))
    assert code == 1
    text = " ".join(err.getvalue().split())
    assert f"{tmp_path}/nowhere/bench/run.json: no run manifest" in text


def test_module_identity_checks(tmp_path):
    good, digest = module(tmp_path / "good")
    assert verify_module(good) == digest
    bad, _ = module(tmp_path / "bad", tamper=True)
    with pytest.raises(IstioConfigError, match="has sha256 .* but its build record .* says"):
        verify_module(bad)
    (tmp_path / "bad" / "sp_istio_cache.wasm.sha256").unlink()
    with pytest.raises(IstioConfigError, match="has no build record"):
        verify_module(bad)
    assert run_module_problem(None, None, None) is None  # a run without the filter
    assert run_module_problem(digest, str(good), None) is None
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    (report_dir / "build.json").write_text(json.dumps({"sha256": "f" * 64}))
    assert run_module_problem(digest, str(good), report_dir).startswith(
        f"the run measured module sha256 {digest}, but this report built {'f' * 64}")


def test_a_profile_run_is_charted_and_tuned_for_that_traffic(tmp_path, monkeypatch):
    from .synthetic import profile_run

    wasm, digest = module(tmp_path / "dist")
    profile_run(tmp_path / "runs" / "shop", wasm_path=str(wasm), wasm_sha256=digest)
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    code = command.run("ci", ["run_dir=runs/shop"], tmp_path / "reports",
                       only="03_benchmark_matrix,04_size_limit_tuning", kernel="sp-istio-cache", progress="none",
                       console=Console(file=io.StringIO()), err=Console(file=err, width=400))
    assert code == 0, err.getvalue()
    run = (tmp_path / "reports" / "latest").resolve()
    assert {p.name for p in (run / "charts").iterdir()} == {"profile_latency.png", "outcome_latency_cdf.png",
                                                           "tuning_response.png"}
    env = json.loads((run / "recommended_plugin_config.json").read_text())
    assert env["trusted"] and env["plugin_config"]["max_response_body_bytes"] == 524288
    summary = (run / "summary.md").read_text()
    assert ("Traffic profile `shop` (5 request kinds, from test rows): largest response 2,097,152 B, largest "
            "cacheable 307,200 B") in summary


def test_gate_failures_outside_the_recommendation_exit_4(tmp_path, monkeypatch):
    wasm, digest = module(tmp_path / "dist")
    spec = {**SIZES, 1024 * KIB: (9000, 3000)}  # 256 KiB already fails: the 1 MiB cells take no part
    sized_run(tmp_path / "runs" / "run", spec, wasm_path=str(wasm), wasm_sha256=digest,
              errors={("filter", 1024 * KIB): 10})
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    code = command.run("ci", ["run_dir=runs/run", "concurrency=8"], tmp_path / "reports",
                       only="03_benchmark_matrix,04_size_limit_tuning", kernel="sp-istio-cache", progress="none",
                       console=Console(file=io.StringIO()), err=Console(file=err, width=400))
    text = " ".join(err.getvalue().split())
    assert code == 4, text
    assert ("report failed the gate (exit 4): Partial report: ran 03_benchmark_matrix, 04_size_limit_tuning "
            "(2 of 4 steps, all passed); not run: 01_build_filter, 02_smoke, but 2 repetition(s) failed the gate: "
            "filter-p1048576-b0-h0-d0-u10 rep 2: 5.0% of 200 requests failed") in text
    run = (tmp_path / "reports" / "latest").resolve()
    assert json.loads((run / "recommended_plugin_config.json").read_text())["trusted"] is True
    assert "## Failure gate" in (run / "summary.md").read_text()


def test_istio_render_reads_the_verdict_the_report_writes(tmp_path, monkeypatch):
    from sp_istio_cache.istio.recommendation import read_recommendation

    _, _, env, run = report(tmp_path, monkeypatch, limited={("baseline", 64 * KIB)})
    rec = read_recommendation(run / "recommended_plugin_config.json")
    assert not rec.trusted and "is marked trusted: false: refused: generator_limited: the load generator" in rec.why
    assert rec.plugin_config == env["plugin_config"]
    accepted = tmp_path / "accepted.json"
    accepted.write_text(json.dumps({**env, "trusted": True, "verdict": "accepted"}))
    assert read_recommendation(accepted).trusted
