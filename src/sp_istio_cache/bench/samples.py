"""Latency samples: recorded in the Locust process, decoded in the orchestrator.

This module is the contract between the two processes, so it imports neither Locust nor pandas.
The Locust listener (``bench/cache_load.py``) feeds :class:`SampleRecorder` one call per request
and writes a *samples file* at exit; the orchestrator reads one or more such files (one per
Locust process) with :func:`load_samples` and turns each histogram into percentiles with
:func:`summarize`.

Samples file (JSON, ``schema`` = :data:`SCHEMA`; the model is :class:`SamplesDoc`, checked when
written and when read)::

    {"schema": "sp-istio-cache/samples/2", "pid": int, "worker": str ("" = single process),
     "mode": "closed" | "rate", "latency_basis": "service" | "intended",
     "hdr": {"lowest_us": 1, "highest_us": int, "significant_figures": int},
     "groups": [{"outcome": "HIT", "status": 200, "count": int, "response_bytes": int,
                 "hist": "<HdrHistogram V2 compressed, base64>"}, ...],
     "kinds": {"hot": {"HIT": int, ...}, "cold": {...}},
     "requests": int, "first_start_unix": float, "last_end_unix": float,
     "slots": int, "missed_slots": int, "lag_hist": "<histogram of send time - due time, µs>",
     "target_rate": float (the whole run's target, the same in every worker's file),
     "cpu_seconds": float, "wall_seconds": float, "cpu_warning": bool,
     "options": {...}}

Latencies are integer microseconds. Percentiles follow HdrHistogram's definition: the value at
rank ``max(1, int(p/100 * n + 0.5))`` of the sorted samples (1-based). With
:data:`SIGNIFICANT_FIGURES` = 4 every value below 32 768 µs is kept exactly, larger ones within
0.01 %.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from hdrh.histogram import HdrHistogram
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA: Final = "sp-istio-cache/samples/2"
LOWEST_US = 1
HIGHEST_US = 120_000_000  # 2 minutes: above Envoy's route timeout
SIGNIFICANT_FIGURES = 4
#: percentiles reported for every group, as (column suffix, percentile)
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))
OUTCOMES = ("HIT", "MISS", "BYPASS", "NONE")


class SamplesError(ValueError):
    """A samples file is missing, empty or malformed; the message names the file."""


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HdrSettings(_Doc):
    """The histogram range (µs) and precision every file uses."""

    lowest_us: int
    highest_us: int
    significant_figures: int


class SampleGroup(_Doc):
    """Requests of one (outcome, status): count, response bytes and their latency histogram
    (HdrHistogram V2, compressed, base64). Status 0 = no response (connection error)."""

    outcome: str
    status: int = Field(ge=0)
    count: int = Field(ge=0)
    response_bytes: int = Field(ge=0)
    hist: str


class SamplesDoc(_Doc):
    """One samples file (see the module docstring)."""

    schema_: Literal["sp-istio-cache/samples/2"] = Field(alias="schema")
    pid: int
    worker: str
    mode: Literal["closed", "rate"]
    latency_basis: Literal["service", "intended"]
    hdr: HdrSettings
    groups: list[SampleGroup]
    kinds: dict[str, dict[str, int]]
    requests: int = Field(ge=0)
    first_start_unix: float | None
    last_end_unix: float | None
    slots: int = Field(ge=0)
    missed_slots: int = Field(ge=0)
    lag_hist: str
    target_rate: float = Field(ge=0)
    cpu_seconds: float
    wall_seconds: float
    cpu_warning: bool
    options: dict[str, Any]


def new_histogram() -> HdrHistogram:
    """An empty microsecond histogram with the workbench's range and precision."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def outcome_of(headers: Any) -> str:
    """Cache outcome of one response from its headers (a case-insensitive mapping or None).

    ``x-sp-cache`` (HIT, MISS, BYPASS) when the filter answered; otherwise ``HIT`` when the
    response carries ``Age`` (Envoy's native cache adds it to hits; the upstream test app never
    sends it); otherwise ``NONE`` (no cache said anything: baseline, or an envoy-cache miss).
    """
    if headers is None:
        return "NONE"
    value = headers.get("x-sp-cache")
    if value:
        return str(value).strip().upper()
    if headers.get("age") is not None:
        return "HIT"
    return "NONE"


@dataclass
class _Group:
    hist: HdrHistogram = field(default_factory=new_histogram)
    count: int = 0
    response_bytes: int = 0


class SampleRecorder:
    """Per-process recorder: histograms by (outcome, status), counts by request kind.

    Not thread-safe; Locust calls request listeners from greenlets of one thread.
    """

    def __init__(self, *, mode: str = "closed", options: dict[str, Any] | None = None) -> None:
        if mode not in ("closed", "rate"):
            raise ValueError(f"mode must be 'closed' or 'rate', got {mode!r}")
        self.mode = mode
        self.options = dict(options or {})
        self.groups: dict[tuple[str, int], _Group] = defaultdict(_Group)
        self.kinds: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.requests = 0
        self.first_start_unix: float | None = None
        self.last_end_unix: float | None = None
        self.slots = 0
        self.missed_slots = 0
        self.lag = new_histogram()
        self.target_rate = 0.0
        self.cpu_warning = False
        self._cpu0 = _cpu_seconds()
        self._wall0 = time.monotonic()

    def record(self, latency_us: float, *, outcome: str, status: int, kind: str = "",
               response_bytes: int = 0, end_unix: float | None = None) -> None:
        """Record one request: latency in µs (rounded, clamped to the histogram range)."""
        value = min(max(int(round(latency_us)), LOWEST_US), HIGHEST_US)
        group = self.groups[(outcome, int(status))]
        group.hist.record_value(value)
        group.count += 1
        group.response_bytes += int(response_bytes or 0)
        if kind:
            self.kinds[kind][outcome] += 1
        self.requests += 1
        end = time.time() if end_unix is None else end_unix
        start = end - latency_us / 1e6
        if self.first_start_unix is None or start < self.first_start_unix:
            self.first_start_unix = start
        if self.last_end_unix is None or end > self.last_end_unix:
            self.last_end_unix = end

    def slot(self, missed: bool, lag_us: float = 0.0) -> None:
        """Count one fixed-rate schedule slot (``missed``: it could not be sent on time) and how
        late, in µs, its request was sent."""
        self.slots += 1
        self.missed_slots += int(missed)
        self.lag.record_value(min(max(int(round(lag_us)), LOWEST_US), HIGHEST_US))

    def as_json(self, worker: str = "") -> dict[str, Any]:
        """The samples-file document (see the module docstring), checked against
        :class:`SamplesDoc`; ``worker`` names the Locust worker ("" for a single process)."""
        doc = {
            "schema": SCHEMA,
            "pid": os.getpid(),
            "worker": worker,
            "mode": self.mode,
            "latency_basis": "intended" if self.mode == "rate" else "service",
            "hdr": {"lowest_us": LOWEST_US, "highest_us": HIGHEST_US,
                    "significant_figures": SIGNIFICANT_FIGURES},
            "groups": [
                {"outcome": outcome, "status": status, "count": g.count,
                 "response_bytes": g.response_bytes, "hist": g.hist.encode().decode("ascii")}
                for (outcome, status), g in sorted(self.groups.items())
            ],
            "kinds": {k: dict(v) for k, v in self.kinds.items()},
            "requests": self.requests,
            "first_start_unix": self.first_start_unix,
            "last_end_unix": self.last_end_unix,
            "slots": self.slots,
            "missed_slots": self.missed_slots,
            "lag_hist": self.lag.encode().decode("ascii"),
            "target_rate": self.target_rate,
            "cpu_seconds": _cpu_seconds() - self._cpu0,
            "wall_seconds": time.monotonic() - self._wall0,
            "cpu_warning": self.cpu_warning,
            "options": self.options,
        }
        return SamplesDoc.model_validate(doc).model_dump(by_alias=True)

    def write(self, path: Path, worker: str = "") -> None:
        """Write the samples file atomically (temp file + rename)."""
        write_samples_doc(path, self.as_json(worker))


def write_samples_doc(path: Path, doc: dict[str, Any]) -> None:
    """Check ``doc`` against :class:`SamplesDoc` and write it atomically.

    Raises:
        SamplesError: the document does not match the schema (names the key).
    """
    path = Path(path)
    try:
        SamplesDoc.model_validate(doc)
    except ValidationError as exc:
        raise SamplesError(f"samples document for {path} does not match its schema: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# -- decoding (orchestrator side) ---------------------------------------------------------------
@dataclass
class CellSamples:
    """Samples of one cell, merged over every Locust process that wrote a file.

    Attributes:
        groups: {(outcome, status): (histogram, count, response_bytes)}.
        kinds: {"hot"|"cold": {outcome: count}}.
        requests: total recorded requests.
        duration_s: first request start to last response end, seconds (0 when no request).
        slots, missed_slots: fixed-rate schedule slots (0 in closed-loop mode).
        lag: histogram of how late (µs) each fixed-rate request was sent after its due time.
        cpu_seconds, wall_seconds: Locust processes' CPU time and the longest wall time.
        cpu_warning: any process saw Locust's CPU warning.
        latency_basis: ``service`` (send to response) or ``intended`` (due time to response).
    """

    groups: dict[tuple[str, int], tuple[HdrHistogram, int, int]]
    kinds: dict[str, dict[str, int]]
    requests: int
    duration_s: float
    slots: int
    missed_slots: int
    target_rate: float
    cpu_seconds: float
    wall_seconds: float
    cpu_warning: bool
    latency_basis: str
    files: list[str]
    lag: HdrHistogram = field(default_factory=new_histogram)

    def outcome_counts(self) -> dict[str, int]:
        """{outcome: requests} over every status."""
        out: dict[str, int] = defaultdict(int)
        for (outcome, _), (_, count, _) in self.groups.items():
            out[outcome] += count
        return dict(out)

    def histogram(self, outcome: str | None = None) -> HdrHistogram:
        """Merged histogram of one outcome (None: every outcome), over every status."""
        merged = new_histogram()
        for (o, _), (hist, _, _) in self.groups.items():
            if outcome is None or o == outcome:
                merged.add(hist)
        return merged

    def non_2xx(self, outcome: str | None = None) -> int:
        """Requests whose status is not 2xx, connection errors (status 0) included."""
        return sum(count for (o, status), (_, count, _) in self.groups.items()
                   if (outcome is None or o == outcome) and not 200 <= status < 300)

    def no_response(self, outcome: str | None = None) -> int:
        """Requests that got no response at all (status 0: refused, reset, timed out)."""
        return sum(count for (o, status), (_, count, _) in self.groups.items()
                   if (outcome is None or o == outcome) and status == 0)

    def response_bytes(self, outcome: str | None = None) -> int:
        """Response body bytes received (every status)."""
        return sum(b for (o, _), (_, _, b) in self.groups.items() if outcome is None or o == outcome)

    def relabel(self, old: str, new: str) -> None:
        """Rename an outcome (e.g. envoy-cache's ``NONE`` to ``MISS``), merging histograms."""
        for (o, status) in [k for k in self.groups if k[0] == old]:
            hist, count, nbytes = self.groups.pop((o, status))
            if (new, status) in self.groups:
                h2, c2, b2 = self.groups[(new, status)]
                h2.add(hist)
                self.groups[(new, status)] = (h2, c2 + count, b2 + nbytes)
            else:
                self.groups[(new, status)] = (hist, count, nbytes)
        for counts in self.kinds.values():
            if old in counts:
                counts[new] = counts.get(new, 0) + counts.pop(old)


def _read_one(path: Path) -> SamplesDoc:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SamplesError(f"cannot read samples file {path}: {exc}") from None
    if not text.strip():
        raise SamplesError(f"samples file {path} is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SamplesError(f"samples file {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else None
        raise SamplesError(f"samples file {path} has schema {found!r}, expected {SCHEMA!r}")
    try:
        return SamplesDoc.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in first["loc"])
        raise SamplesError(f"samples file {path}: {key}: {'missing' if first['type'] == 'missing' else first['msg']}") \
            from None


def _decode(path: Path, text: str, what: str) -> HdrHistogram:
    try:
        return HdrHistogram.decode(text.encode("ascii"))
    except Exception as exc:  # noqa: BLE001 - hdrh raises several types
        raise SamplesError(f"samples file {path}: undecodable histogram for {what}: {exc}") from None


def load_samples(paths: Iterable[Path]) -> CellSamples:
    """Decode and merge samples files (one per Locust process or worker).

    Raises:
        SamplesError: no file, or a file that is unreadable, empty, of another schema, missing a
            key, or whose histogram counts disagree with its group counts; names the file.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise SamplesError("no samples file to load")
    groups: dict[tuple[str, int], tuple[HdrHistogram, int, int]] = {}
    kinds: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    requests = slots = missed = 0
    cpu = wall = rate = 0.0
    warning = False
    first: float | None = None
    last: float | None = None
    bases = set()
    lag = new_histogram()
    for path in paths:
        doc = _read_one(path)
        bases.add(doc.latency_basis)
        for g in doc.groups:
            hist = _decode(path, g.hist, f"{g.outcome}/{g.status}")
            if hist.get_total_count() != g.count:
                raise SamplesError(f"samples file {path}: histogram {g.outcome}/{g.status} holds "
                                   f"{hist.get_total_count()} values, count says {g.count}")
            key = (g.outcome, g.status)
            if key in groups:
                h0, c0, b0 = groups[key]
                h0.add(hist)
                groups[key] = (h0, c0 + g.count, b0 + g.response_bytes)
            else:
                groups[key] = (hist, g.count, g.response_bytes)
        for kind, counts in doc.kinds.items():
            for outcome, n in counts.items():
                kinds[kind][outcome] += n
        lag.add(_decode(path, doc.lag_hist, "the schedule lag"))
        requests += doc.requests
        slots += doc.slots
        missed += doc.missed_slots
        rate = max(rate, doc.target_rate)
        cpu += doc.cpu_seconds
        wall = max(wall, doc.wall_seconds)
        warning = warning or doc.cpu_warning
        if doc.first_start_unix is not None:
            first = doc.first_start_unix if first is None else min(first, doc.first_start_unix)
        if doc.last_end_unix is not None:
            last = doc.last_end_unix if last is None else max(last, doc.last_end_unix)
    if len(bases) != 1:
        raise SamplesError(f"samples files mix latency bases {sorted(bases)}: {[str(p) for p in paths]}")
    return CellSamples(groups=groups, kinds={k: dict(v) for k, v in kinds.items()}, requests=requests,
                       duration_s=(last - first) if first is not None and last is not None else 0.0,
                       slots=slots, missed_slots=missed, target_rate=rate, cpu_seconds=cpu,
                       wall_seconds=wall, cpu_warning=warning, latency_basis=bases.pop(),
                       files=[str(p) for p in paths], lag=lag)


def summarize(source: HdrHistogram | CellSamples, outcome: str | None = None) -> dict[str, float]:
    """Percentiles in µs: ``{"p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us",
    "min_us"}``; NaN for every field when there is no sample.

    ``source`` is one histogram, or the :class:`CellSamples` that :func:`load_samples` returns
    (then ``outcome`` picks one outcome; None: every request).
    """
    hist = source.histogram(outcome) if isinstance(source, CellSamples) else source
    keys = [f"{name}_us" for name, _ in PERCENTILES] + ["max_us", "mean_us", "min_us"]
    if hist.get_total_count() == 0:
        return {k: math.nan for k in keys}
    values = hist.get_percentile_to_value_dict([p for _, p in PERCENTILES])  # one pass over the counts
    out = {f"{name}_us": float(values[p]) for name, p in PERCENTILES}
    out["max_us"] = float(hist.get_max_value())
    out["mean_us"] = _mean(hist)
    out["min_us"] = float(hist.get_min_value())
    return out


def _mean(hist: HdrHistogram) -> float:
    """Mean in µs, visiting only the non-empty buckets (hdrh's own mean walks every bucket)."""
    counts = np.ctypeslib.as_array(hist.counts)[:hist.counts_len]
    total = 0.0
    for index in np.nonzero(counts)[0]:
        value = hist.get_value_from_index(int(index))
        mid = (hist.get_lowest_equivalent_value(value) + hist.get_highest_equivalent_value(value)) / 2
        total += int(counts[index]) * mid
    return total / hist.get_total_count()


def brute_force_percentile(values_us: list[int], percentile: float) -> int:
    """Reference percentile over raw samples with HdrHistogram's rank rule (see module docstring)."""
    if not values_us:
        raise ValueError("no samples")
    ordered = sorted(values_us)
    rank = max(1, int(percentile / 100 * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]
