"""deploy apply|status|restart|remove: the exact kubectl commands in apply order, dry-run without
kubectl, guards (the other alternative, the referenced Secrets), the module re-check, and clear
errors when kubectl or a cluster context is missing."""

from __future__ import annotations

import stat

import pytest
import yaml
from typer.testing import CliRunner

from sp_istio_cache.cli import app
from sp_istio_cache.istio import deploy as d
from sp_istio_cache.istio import render as r
from sp_istio_cache.istio.validate import IstioConfigError

from .conftest import write_module


@pytest.fixture
def rendered_dir(tmp_path, params):
    out = tmp_path / "istio"
    r.write(r.render(params(namespace="shop", selector={"app": "checkout"},
                            client_service_accounts=["shop/checkout"])), out)
    return out


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def _commands(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("kubectl ")]


def fake_kubectl(tmp_path, *, context: str | None = "kind-dev", alternative: str = "", secrets: str = "yes"):
    """A kubectl stand-in that logs its argv and answers like kubectl would."""
    log = tmp_path / "kubectl.log"
    script = tmp_path / "kubectl"
    current = f'echo {context}; exit 0' if context else 'echo "error: current-context is not set" >&2; exit 1'
    secret = 'echo "secret/$6"' if secrets == "yes" else ":"
    script.write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$*" in
  "config current-context") {current} ;;
  *" get envoyfilters"*|*" get wasmplugins"*) printf '%s' '{alternative}' ;;
  *" get secret "*) {secret} ;;
esac
exit 0
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), log


def test_apply_dry_run_prints_every_manifest_in_apply_order(rendered_dir, module):
    res = _invoke("deploy", "apply", "--dry-run", "--dir", str(rendered_dir), "--wasm", str(module),
                  "--workload", "checkout")
    assert res.exit_code == 0, res.output
    assert _commands(res.stdout) == [
        "kubectl --namespace shop get envoyfilters.networking.istio.io/sp-istio-cache --ignore-not-found -o name",
        f"kubectl apply -f {rendered_dir}/namespace.yaml",
        "kubectl --namespace shop get secret sp-istio-cache-keys --ignore-not-found -o name",
        "kubectl --namespace sp-system get secret sp-istio-cache-keys --ignore-not-found -o name",
        f"kubectl apply -f {rendered_dir}/backend.yaml",
        f"kubectl apply -f {rendered_dir}/authorizationpolicy.yaml",
        f"kubectl apply -f {rendered_dir}/wasmplugin.yaml",
        f"kubectl --namespace shop patch deployment checkout --type strategic --patch-file "
        f"{rendered_dir}/sidecar-secret-env.yaml",
    ]
    # every manifest it applies is printed in full, in that order; never the other alternative
    applied = ("namespace.yaml", "backend.yaml", "authorizationpolicy.yaml", "wasmplugin.yaml",
               "sidecar-secret-env.yaml")
    positions = [res.stdout.index((rendered_dir / n).read_text().rstrip()) for n in applied]
    assert positions == sorted(positions)
    assert "kind: EnvoyFilter" not in res.stdout
    assert "module sha256" in res.stderr and "(checked)" in res.stderr


def test_apply_envoyfilter_with_an_external_backend(tmp_path, params, module):
    out = tmp_path / "ext"
    r.write(r.render(params(backend_url="https://cache.example.com")), out)
    res = _invoke("deploy", "apply", "--dry-run", "--dir", str(out), "--kind", "envoyfilter", "--context", "prod",
                  "--wasm", str(module))
    assert res.exit_code == 0, res.output
    assert _commands(res.stdout) == [
        "kubectl --context prod --namespace default get wasmplugins.extensions.istio.io/sp-istio-cache "
        "--ignore-not-found -o name",
        "kubectl --context prod --namespace default get secret sp-istio-cache-keys --ignore-not-found -o name",
        f"kubectl --context prod apply -f {out}/serviceentry.yaml",
        f"kubectl --context prod apply -f {out}/destinationrule.yaml",
        f"kubectl --context prod apply -f {out}/envoyfilter.yaml",
    ]


@pytest.mark.parametrize("action,expected", [
    ("status", ["kubectl --namespace shop get authorizationpolicies.security.istio.io,deployments.apps,"
                "destinationrules.networking.istio.io,envoyfilters.networking.istio.io,poddisruptionbudgets.policy,"
                "serviceentries.networking.istio.io,services,wasmplugins.extensions.istio.io "
                "-l app.kubernetes.io/managed-by=sp-istio-cache -o wide",
                "kubectl --namespace sp-system get authorizationpolicies.security.istio.io,deployments.apps,"
                "destinationrules.networking.istio.io,envoyfilters.networking.istio.io,poddisruptionbudgets.policy,"
                "serviceentries.networking.istio.io,services,wasmplugins.extensions.istio.io "
                "-l app.kubernetes.io/managed-by=sp-istio-cache -o wide",
                "kubectl --namespace shop get pods -l app=checkout -o wide"]),
    ("restart", ["kubectl --namespace shop rollout restart deployment -l app=checkout"]),
    ("remove", ["kubectl --namespace shop delete envoyfilters.networking.istio.io/sp-istio-cache "
                "wasmplugins.extensions.istio.io/sp-istio-cache --ignore-not-found",
                "kubectl --namespace sp-system delete authorizationpolicies.security.istio.io/sp-cache-backend "
                "deployments.apps/sp-cache-backend poddisruptionbudgets.policy/sp-cache-backend "
                "serviceaccounts/sp-cache-backend services/sp-cache-backend --ignore-not-found"]),
])
def test_other_actions_dry_run(rendered_dir, action, expected):
    res = _invoke("deploy", action, "--dry-run", "--dir", str(rendered_dir))
    assert res.exit_code == 0, res.output
    assert _commands(res.stdout) == expected


def test_apply_runs_the_steps_in_order(rendered_dir, tmp_path, module):
    kubectl, log = fake_kubectl(tmp_path)
    res = _invoke("deploy", "apply", "--dir", str(rendered_dir), "--kubectl", kubectl, "--wasm", str(module))
    assert res.exit_code == 0, res.output
    assert log.read_text().splitlines() == [
        "config current-context",
        "--namespace shop get envoyfilters.networking.istio.io/sp-istio-cache --ignore-not-found -o name",
        f"apply -f {rendered_dir}/namespace.yaml",
        "--namespace shop get secret sp-istio-cache-keys --ignore-not-found -o name",
        "--namespace sp-system get secret sp-istio-cache-keys --ignore-not-found -o name",
        f"apply -f {rendered_dir}/backend.yaml",
        f"apply -f {rendered_dir}/authorizationpolicy.yaml",
        f"apply -f {rendered_dir}/wasmplugin.yaml",
    ]


def test_apply_stops_when_a_referenced_secret_is_missing(rendered_dir, tmp_path, module):
    kubectl, log = fake_kubectl(tmp_path, secrets="no")
    res = _invoke("deploy", "apply", "--dir", str(rendered_dir), "--kubectl", kubectl, "--wasm", str(module))
    assert res.exit_code == 1
    assert "Secret shop/sp-istio-cache-keys does not exist: create it before applying" in " ".join(res.output.split())
    assert log.read_text().splitlines()[-1] == ("--namespace shop get secret sp-istio-cache-keys "
                                                "--ignore-not-found -o name")


def test_apply_refuses_when_the_other_alternative_is_deployed(rendered_dir, tmp_path, module):
    kubectl, log = fake_kubectl(tmp_path, alternative="envoyfilter.networking.istio.io/sp-istio-cache")
    res = _invoke("deploy", "apply", "--dir", str(rendered_dir), "--kubectl", kubectl, "--wasm", str(module))
    assert res.exit_code == 1
    assert "would insert the filter twice" in " ".join(res.output.split())
    assert not any(" apply " in f" {ln} " for ln in log.read_text().splitlines())


def test_apply_rechecks_the_module(rendered_dir, tmp_path, module):
    module.write_bytes(module.read_bytes() + b"\x00\x06\x05evil!")
    res = _invoke("deploy", "apply", "--dry-run", "--dir", str(rendered_dir), "--wasm", str(module))
    assert res.exit_code == 1 and "but its build record" in " ".join(res.output.split())
    other = write_module(tmp_path / "other" / "sp_istio_cache.wasm", b"\x00asm\x01\x00\x00\x00")
    res = _invoke("deploy", "apply", "--dry-run", "--dir", str(rendered_dir), "--wasm", str(other))
    assert res.exit_code == 1
    assert "wasmplugin.yaml: renders module sha256" in " ".join(res.output.split())
    assert "kubectl" not in res.stdout  # nothing printed or applied


def test_a_hand_edit_that_breaks_a_reference_is_refused(rendered_dir, module):
    path = rendered_dir / "wasmplugin.yaml"
    doc = yaml.safe_load(path.read_text())
    del doc["spec"]["vmConfig"]
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(IstioConfigError, match=r"secrets: WasmPlugin sp-istio-cache: the filter reads "
                                               r"SP_CACHE_BACKEND_KEY from its environment, but the WasmPlugin "
                                               r"does not expose it"):
        d.read_rendered(rendered_dir)


def test_missing_kubectl_is_a_clear_error(rendered_dir, tmp_path, module):
    res = _invoke("deploy", "apply", "--dir", str(rendered_dir), "--wasm", str(module),
                  "--kubectl", str(tmp_path / "no-such-kubectl"))
    assert res.exit_code == 1
    assert "kubectl not found" in " ".join(res.output.split())


def test_missing_context_is_a_clear_error(rendered_dir, tmp_path):
    kubectl, log = fake_kubectl(tmp_path, context=None)
    res = _invoke("deploy", "status", "--dir", str(rendered_dir), "--kubectl", kubectl)
    assert res.exit_code == 1
    assert "no current kubectl context" in " ".join(res.output.split())
    assert log.read_text().splitlines() == ["config current-context"]  # nothing else was run


def test_unrendered_directory_is_refused(tmp_path):
    with pytest.raises(d.DeployError, match="istio render"):
        d.read_rendered(tmp_path)
