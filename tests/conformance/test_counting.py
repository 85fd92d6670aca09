"""The suite's own classification and our counting reproduce the published figures (issue 12)."""

from __future__ import annotations

import pytest

from sp_istio_cache.conformance.counting import COLUMNS, CountingError, count
from sp_istio_cache.conformance.runner import published_rows

# interim-* excluded (docs/conformance.md); every result type of the suite
NGINX = {"pass": 158, "fail": 32, "optional_fail": 30, "yes": 19, "no": 53, "setup_fail": 5, "harness_fail": 0,
         "dependency_fail": 64, "retry": 0, "untested": 5}
VARNISH = {"pass": 164, "fail": 17, "optional_fail": 44, "yes": 27, "no": 47, "setup_fail": 8, "harness_fail": 0,
           "dependency_fail": 54, "retry": 0, "untested": 5}

# issue 12's table (pass, required FAIL); it counted the 4 interim tests as well
ISSUE_TABLE = {"nginx": (158, 33), "varnish": (164, 17), "squid": (181, 17), "trafficserver": (202, 19),
               "apache": (199, 12), "caddy": (165, 10), "fastly": (145, 37)}


def test_suite_lists_its_tests_and_the_interim_exclusion(suite):
    assert len(suite.tests) == 370
    excluded = sorted(i for i, t in suite.tests.items() if t.excluded)
    assert excluded == ["interim-102", "interim-103", "interim-no-header-reuse", "interim-not-cached"]
    assert len(suite.counted_ids()) == 366
    assert suite.tests["freshness-max-age-age"].depends_on == ("freshness-max-age",)
    assert suite.tests["freshness-none"].kind == "check"


def test_published_nginx_and_varnish_counts(suite):
    rows = {r.label: r for r in published_rows(suite)}
    assert dict(rows["nginx"].counts) == NGINX
    assert dict(rows["Varnish"].counts) == VARNISH
    assert rows["nginx"].total == 366
    assert sorted(rows) == ["ATS", "Fastly", "HAProxy", "Squid", "Varnish", "caddy", "httpd", "nginx"]


def test_issue_table_is_the_same_counting_with_interim_included(suite):
    published = {p.key: p.path for p in suite.published()}
    classified = suite.classify([published[k] for k in ISSUE_TABLE])
    every_id = list(suite.tests)
    for key, (passed, failed) in ISSUE_TABLE.items():
        counts = count(classified[published[key].resolve()], every_id)
        assert (key, counts["pass"], counts["fail"]) == (key, passed, failed)


def test_count_refuses_unknown_types_and_missing_ids():
    assert count({"a": "pass", "b": "fail"}, ["a", "b"]) == {**dict.fromkeys(COLUMNS, 0), "pass": 1, "fail": 1}
    with pytest.raises(CountingError, match="'b' has no classified result"):
        count({"a": "pass"}, ["a", "b"])
    with pytest.raises(CountingError, match="unknown result type 'great'"):
        count({"a": "great"}, ["a"])
