"""Counting classified results: one row of the comparison table per cache.

The counting definition (docs/conformance.md): each test gets exactly one result type from the
suite's ``determineTestResult`` (dependencies honoured); a row counts the tests of each type,
over every test of the suite except the excluded groups (``interim``). So "pass" is the
``pass`` type: required *and* optimal tests that passed, without the ``yes`` answers of
``check`` tests; "required FAIL" is the ``fail`` type: required tests that failed on their own
(a test whose dependency did not pass is ``dependency_fail``, not ``fail``). Counted this way
with the interim tests included, the published results give exactly issue 12's table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: the suite's result types (test-engine/lib/results.mjs ``resultTypes``), in table order,
#: with the column titles of the comparison table
COLUMNS: dict[str, str] = {
    "pass": "pass",
    "fail": "required FAIL",
    "optional_fail": "optional fail",
    "yes": "check yes",
    "no": "check no",
    "setup_fail": "setup fail",
    "harness_fail": "harness fail",
    "dependency_fail": "dependency fail",
    "retry": "retry",
    "untested": "untested",
}


class CountingError(ValueError):
    """A classified result has a type the suite does not define, or a counted test is missing."""


@dataclass(frozen=True)
class Row:
    """One cache's counts: ``label`` (``filter``, ``nginx``...), ``source`` (``measured`` here or
    ``published`` by the suite), ``version`` (published only), ``counts`` {result type: tests}."""

    label: str
    source: str
    counts: Mapping[str, int]
    version: str = ""

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def count(classified: Mapping[str, str], counted_ids: Iterable[str]) -> dict[str, int]:
    """Tests per result type over ``counted_ids``; every type of :data:`COLUMNS` is a key.

    Raises:
        CountingError: an id of ``counted_ids`` is not in ``classified``, or its type is unknown.
    """
    tally: Counter[str] = Counter()
    for test_id in counted_ids:
        try:
            kind = classified[test_id]
        except KeyError:
            raise CountingError(f"test {test_id!r} has no classified result") from None
        if kind not in COLUMNS:
            raise CountingError(f"test {test_id!r} has unknown result type {kind!r}")
        tally[kind] += 1
    return {kind: tally[kind] for kind in COLUMNS}


def ids_of_type(classified: Mapping[str, str], counted_ids: Iterable[str], kind: str) -> list[str]:
    """The ids among ``counted_ids`` whose result type is ``kind``, in the given order."""
    return [i for i in counted_ids if classified.get(i) == kind]
