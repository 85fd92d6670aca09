"""`istio render` deploys a tuning recommendation only when the tuning step vouches for it; a
refused, untrusted, verdict-less or absent one is refused (exit 1, reason named) unless the
operator asks for the schema defaults explicitly."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sp_istio_cache.cli import app
from sp_istio_cache.istio import render as r
from sp_istio_cache.istio.recommendation import RecommendationRefused, choose_plugin_config, read_recommendation

from .conftest import TUNED

DEFAULTS = {"lookup_timeout_ms": 200}


def _choose(path, **kw):
    return choose_plugin_config(path, defaults=DEFAULTS, **kw)


def test_trusted_envelope_is_used_verbatim(tuning_output):
    path = tuning_output({"verdict": "trusted", "trusted": True, "plugin_config": TUNED})
    config, notes = _choose(path)
    assert config == TUNED and list(config) == list(TUNED)
    assert notes == [f"pluginConfig from {path} (verdict trusted)"]


def test_flat_recommendation_loses_its_verdict_keys(tuning_output):
    path = tuning_output({**TUNED, "verdict": "ok", "reason": "3 repetitions, intervals separate"})
    assert _choose(path)[0] == TUNED


@pytest.mark.parametrize("doc,reason", [
    ({"trusted": False, "reason": "cell filter-p1024 is generator-limited", "plugin_config": TUNED},
     "is marked trusted: false: cell filter-p1024 is generator-limited"),
    ({"verdict": "refused", "reasons": ["unstable: interval 38 % wide", "error rate 5 %"], **TUNED},
     "has verdict 'refused': unstable: interval 38 % wide; error rate 5 %"),
    ({"verdict": "trusted", "trusted": False, "plugin_config": TUNED}, "is marked trusted: false"),
    (TUNED, "carries no verdict"),
])
def test_untrustworthy_recommendations_are_refused_naming_why(tuning_output, doc, reason):
    path = tuning_output(doc)
    with pytest.raises(RecommendationRefused) as info:
        _choose(path)
    message = str(info.value)
    assert message.startswith(f"pluginConfig: the recommendation is not trustworthy: {path} {reason}"), message
    assert "--schema-defaults" in message
    config, notes = _choose(path, schema_defaults=True)  # only with the explicit flag
    assert config == DEFAULTS and notes[0].endswith("pluginConfig from the schema defaults (--schema-defaults)")


def test_absent_recommendation_is_refused_unless_schema_defaults(tmp_path):
    with pytest.raises(RecommendationRefused, match=r"^pluginConfig: no recommendation at .*absent.json\. Run "
                                                    r"`sp-istio-cache report`"):
        _choose(tmp_path / "absent.json")
    assert _choose(tmp_path / "absent.json", schema_defaults=True)[0] == DEFAULTS


def test_an_explicit_file_is_the_operators_choice_unless_marked_refused(tmp_path):
    plain = tmp_path / "mine.json"
    plain.write_text(json.dumps(TUNED))
    assert _choose(tmp_path / "absent.json", explicit=plain) == (TUNED, [f"pluginConfig from {plain}"])
    refused = tmp_path / "refused.json"
    refused.write_text(json.dumps({"verdict": "refused", "reason": "partial run", "plugin_config": TUNED}))
    with pytest.raises(RecommendationRefused, match=r"^pluginConfig: refused: .*has verdict 'refused': partial run"):
        _choose(tmp_path / "absent.json", explicit=refused, schema_defaults=True)


@pytest.mark.parametrize("text,said", [("[1, 2]", "must hold a JSON object, got list"), ("{", "cannot read"),
                                       ('{"plugin_config": [1]}', "plugin_config must be an object")])
def test_malformed_files_are_refused(tmp_path, text, said):
    path = tmp_path / "rec.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=said):
        read_recommendation(path)


def test_cli_render_exits_1_naming_the_reason_and_writes_nothing(tmp_path, module, tuning_output):
    tuning_output({"verdict": "refused", "reason": "generator-limited baseline", "plugin_config": TUNED})
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["istio", "render", "--out", str(out), "--wasm", str(module), "--no-envoy-check"])
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert "has verdict 'refused': generator-limited baseline" in text
    assert not out.exists()
    res = CliRunner().invoke(app, ["istio", "render", "--out", str(out), "--wasm", str(module), "--no-envoy-check",
                                   "--schema-defaults"])
    assert res.exit_code == 0, res.output
    assert "pluginConfig from the schema defaults" in " ".join(res.output.split())
    assert (out / "wasmplugin.yaml").exists()


def test_cli_render_uses_a_trusted_recommendation(tmp_path, module, tuning_output):
    tuning_output({"verdict": "trusted", "plugin_config": TUNED})
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["istio", "render", "--out", str(out), "--wasm", str(module), "--no-envoy-check"])
    assert res.exit_code == 0, res.output
    assert f"pluginConfig from {r.TUNING_OUTPUT} (verdict trusted)" in " ".join(res.output.split())
