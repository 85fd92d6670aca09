"""Where the report runs Envoy: Docker with the sidecar limits when an engine answers."""

from __future__ import annotations

import json

import pytest

from sp_istio_cache.report import runtime_choice
from sp_istio_cache.runtime import RuntimeUnavailable


def no_engine(monkeypatch, why: str = "runtime=docker needs a Docker engine: connection refused") -> None:
    """A FAKE engine check (unit test only): the engine does not answer."""
    monkeypatch.setattr(runtime_choice, "_engine", lambda: why)


def test_auto_without_an_engine_runs_locally_and_says_the_limits_were_not_enforced(monkeypatch):
    no_engine(monkeypatch)
    choice = runtime_choice.choose_runtime("auto", 1.0, "128Mi")
    assert (choice.name, choice.options, choice.enforced) == ("local", {}, False)
    assert choice.note == ("Envoy ran as a local process: the sidecar limits (1 CPU, 128 MiB) were NOT enforced "
                           "(runtime=docker needs a Docker engine: connection refused)")


def test_auto_with_an_engine_runs_docker_with_the_limits(monkeypatch):
    monkeypatch.setattr(runtime_choice, "_engine", lambda: None)  # FAKE: the engine answers
    choice = runtime_choice.choose_runtime("auto", 0.5, "256Mi")
    assert (choice.name, choice.options, choice.enforced) == ("docker", {"cpu_limit": 0.5, "memory_limit": 268435456},
                                                              True)
    assert choice.note == "Envoy ran in a Docker container limited to 0.5 CPU, 256 MiB: the sidecar budget was enforced"


def test_docker_asked_without_an_engine_fails_naming_why(monkeypatch):
    no_engine(monkeypatch)
    with pytest.raises(RuntimeUnavailable, match="connection refused"):
        runtime_choice.choose_runtime("docker", 1.0, "128Mi")


def test_local_and_bad_values():
    assert runtime_choice.choose_runtime("local", 1.0, 134217728).note.endswith(
        "were NOT enforced (runtime: local was requested)")
    with pytest.raises(ValueError, match="runtime must be auto, docker or local, got 'kubernetes'"):
        runtime_choice.choose_runtime("kubernetes", 1.0, "128Mi")
    with pytest.raises(ValueError, match="not a quantity"):
        runtime_choice.choose_runtime("local", 1.0, "lots")


def test_the_choice_is_made_once_per_report(tmp_path, monkeypatch):
    no_engine(monkeypatch)
    first = runtime_choice.runtime_for(tmp_path, "auto", 1.0, "128Mi")
    monkeypatch.setattr(runtime_choice, "_engine", lambda: None)
    assert runtime_choice.runtime_for(tmp_path, "auto", 1.0, "128Mi") == first  # read back, not re-decided
    assert json.loads((tmp_path / "runtime.json").read_text())["name"] == "local"
