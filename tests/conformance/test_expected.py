"""The expected-failures list: its format, the gate's verdicts, and the checked-in file."""

from __future__ import annotations

from pathlib import Path

import pytest

from sp_istio_cache.conformance import expected
from sp_istio_cache.conformance.expected import ExpectedFailure, ExpectedFailuresError, evaluate, load

REASON = "a reason long enough to explain"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "expected.yaml"
    path.write_text(text)
    return path


def test_load_reads_profiles_and_folds_reason_whitespace(tmp_path):
    path = write(tmp_path, f"filter:\n  - id: a\n    reason: >-\n      {REASON}\n      continued\n"
                           f"filter+rfc-faithful: []\n")
    assert load(path) == {"filter": [ExpectedFailure("a", f"{REASON} continued")], "filter+rfc-faithful": []}


def test_empty_file_is_an_empty_list(tmp_path):
    assert load(write(tmp_path, "")) == {}


@pytest.mark.parametrize(("text", "message"), [
    ("filter:\n  - id: a\n", r"\$.filter\[0\]: 'reason' is a required property"),
    ("filter:\n  - id: a\n    reason: short\n", r"\$.filter\[0\].reason: 'short' is too short"),
    (f"filter:\n  - id: a\n    reason: {REASON}\n    why: x\n", r"\$.filter\[0\]: Additional properties"),
    (f"Filter:\n  - id: a\n    reason: {REASON}\n", r"'Filter' does not match"),
    ("filter: [unclosed\n", "cannot read expected failures"),
    (f"filter:\n  - id: a\n    reason: {REASON}\n  - id: a\n    reason: {REASON}\n", "filter lists a twice"),
])
def test_bad_files_are_refused_naming_the_entry(tmp_path, text, message):
    with pytest.raises(ExpectedFailuresError, match=message):
        load(write(tmp_path, text))


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ExpectedFailuresError, match="nope.yaml"):
        load(tmp_path / "nope.yaml")


def test_gate_reports_unexpected_stale_and_unknown():
    classified = {"a": "fail", "b": "fail", "c": "pass", "d": "dependency_fail", "interim-102": "fail"}
    counted = ["a", "b", "c", "d"]
    listed = [ExpectedFailure(i, REASON) for i in ("a", "c", "d", "interim-102", "gone")]
    result = evaluate("filter", classified, counted, listed)
    assert result.failures == ["a", "b"]
    assert result.unexpected == ["b"]
    assert result.stale == {"c": "pass", "d": "dependency_fail"}
    assert result.unknown == ["gone", "interim-102"]
    assert not result.ok
    assert result.problems()[0] == "filter: required FAIL not on the expected list: b"
    assert "stale expected-failure entry c (now pass): remove it" in result.problems()[1]


def test_gate_passes_when_the_list_is_exact():
    result = evaluate("baseline", {"a": "fail", "b": "pass"}, ["a", "b"], [ExpectedFailure("a", REASON)])
    assert result.ok and result.problems() == []


def test_profile_names():
    assert expected.profile_name("filter") == "filter"
    assert expected.profile_name("filter", Path("conformance/rfc-faithful.json")) == "filter+rfc-faithful"


def test_checked_in_list_names_counted_tests_only(suite):
    lists = load()
    assert sorted(lists) == ["baseline", "envoy-cache", "filter"]
    assert lists["filter"] == []  # the filter's default config: no required failure
    counted = set(suite.counted_ids())
    for profile, entries in lists.items():
        assert [e.id for e in entries if e.id not in counted] == [], profile
        assert [e.id for e in entries if suite.tests[e.id].kind != "required"] == [], profile
