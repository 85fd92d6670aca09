"""deploy apply|status|restart|remove: the exact kubectl commands, dry-run without kubectl, and
clear errors when kubectl or a cluster context is missing."""

from __future__ import annotations

import os
import stat

import pytest
from typer.testing import CliRunner

from sp_istio_cache.cli import app
from sp_istio_cache.istio import deploy as d
from sp_istio_cache.istio import render as r

SHA = "667216ab56aeb86c33e7e19729977ac6fa1d4f2a524ee0653f67dfdb2e716081"


@pytest.fixture
def rendered_dir(tmp_path, no_tuning_output):
    out = tmp_path / "istio"
    r.write(r.render(r.IstioParams(sha256=SHA, namespace="shop", selector={"app": "checkout"},
                                   backend_url="https://cache.example.com")), out)
    return out


def fake_kubectl(tmp_path, *, context: str | None = "kind-dev", get_output: str = "") -> tuple[str, os.PathLike]:
    """A kubectl stand-in that logs its argv and answers like kubectl would."""
    log = tmp_path / "kubectl.log"
    script = tmp_path / "kubectl"
    current = f'echo {context}; exit 0' if context else 'echo "error: current-context is not set" >&2; exit 1'
    script.write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$*" in
  "config current-context") {current} ;;
  *" get envoyfilters"*|*" get wasmplugins"*) printf '%s' '{get_output}' ;;
esac
exit 0
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), log


def test_apply_dry_run_prints_the_exact_commands_and_manifests(rendered_dir):
    res = CliRunner().invoke(app, ["deploy", "apply", "--dry-run", "--dir", str(rendered_dir)])
    assert res.exit_code == 0, res.output
    commands = [ln for ln in res.output.splitlines() if ln.startswith("kubectl ")]
    assert commands == [
        "kubectl --namespace shop get envoyfilters.networking.istio.io/sp-istio-cache --ignore-not-found -o name",
        f"kubectl --namespace shop apply -f {rendered_dir}/serviceentry.yaml",
        f"kubectl --namespace shop apply -f {rendered_dir}/destinationrule.yaml",
        f"kubectl --namespace shop apply -f {rendered_dir}/wasmplugin.yaml",
    ]
    assert (rendered_dir / "wasmplugin.yaml").read_text().rstrip() in res.output
    assert "kind: EnvoyFilter" not in res.output  # never both alternatives


def test_apply_envoyfilter_guards_against_the_wasmplugin(rendered_dir):
    res = CliRunner().invoke(app, ["deploy", "apply", "--dry-run", "--dir", str(rendered_dir),
                                   "--kind", "envoyfilter", "--context", "prod"])
    assert res.exit_code == 0, res.output
    commands = [ln for ln in res.output.splitlines() if ln.startswith("kubectl ")]
    assert commands[0] == ("kubectl --context prod --namespace shop get wasmplugins.extensions.istio.io/sp-istio-cache "
                           "--ignore-not-found -o name")
    assert commands[-1] == f"kubectl --context prod --namespace shop apply -f {rendered_dir}/envoyfilter.yaml"


@pytest.mark.parametrize("action,expected", [
    ("status", ["kubectl --namespace shop get wasmplugins.extensions.istio.io,envoyfilters.networking.istio.io,"
                "serviceentries.networking.istio.io,destinationrules.networking.istio.io "
                "-l app.kubernetes.io/name=sp-istio-cache -o wide",
                "kubectl --namespace shop get pods -l app=checkout -o wide"]),
    ("restart", ["kubectl --namespace shop rollout restart deployment -l app=checkout"]),
    ("remove", ["kubectl --namespace shop delete wasmplugins.extensions.istio.io/sp-istio-cache "
                "envoyfilters.networking.istio.io/sp-istio-cache serviceentries.networking.istio.io/sp-istio-cache-backend "
                "destinationrules.networking.istio.io/sp-istio-cache-backend --ignore-not-found"]),
])
def test_other_actions_dry_run(rendered_dir, action, expected):
    res = CliRunner().invoke(app, ["deploy", action, "--dry-run", "--dir", str(rendered_dir)])
    assert res.exit_code == 0, res.output
    assert [ln for ln in res.output.splitlines() if ln.startswith("kubectl ")] == expected


def test_missing_kubectl_is_a_clear_error(rendered_dir, tmp_path):
    res = CliRunner().invoke(app, ["deploy", "apply", "--dir", str(rendered_dir),
                                   "--kubectl", str(tmp_path / "no-such-kubectl")])
    assert res.exit_code == 1
    assert "kubectl not found" in " ".join(res.output.split())


def test_missing_context_is_a_clear_error(rendered_dir, tmp_path):
    kubectl, log = fake_kubectl(tmp_path, context=None)
    res = CliRunner().invoke(app, ["deploy", "status", "--dir", str(rendered_dir), "--kubectl", kubectl])
    assert res.exit_code == 1
    assert "no current kubectl context" in " ".join(res.output.split())
    assert log.read_text().splitlines() == ["config current-context"]  # nothing else was run


def test_apply_runs_the_steps_in_order(rendered_dir, tmp_path):
    kubectl, log = fake_kubectl(tmp_path)
    res = CliRunner().invoke(app, ["deploy", "apply", "--dir", str(rendered_dir), "--kubectl", kubectl])
    assert res.exit_code == 0, res.output
    assert log.read_text().splitlines() == [
        "config current-context",
        "--namespace shop get envoyfilters.networking.istio.io/sp-istio-cache --ignore-not-found -o name",
        f"--namespace shop apply -f {rendered_dir}/serviceentry.yaml",
        f"--namespace shop apply -f {rendered_dir}/destinationrule.yaml",
        f"--namespace shop apply -f {rendered_dir}/wasmplugin.yaml",
    ]


def test_apply_refuses_when_the_other_alternative_is_deployed(rendered_dir, tmp_path):
    kubectl, log = fake_kubectl(tmp_path, get_output="envoyfilter.networking.istio.io/sp-istio-cache")
    res = CliRunner().invoke(app, ["deploy", "apply", "--dir", str(rendered_dir), "--kubectl", kubectl])
    assert res.exit_code == 1
    assert "would insert the filter twice" in " ".join(res.output.split())
    assert not any(" apply " in ln for ln in log.read_text().splitlines())


def test_unrendered_directory_is_refused(tmp_path):
    with pytest.raises(d.DeployError, match="istio render"):
        d.read_rendered(tmp_path)
