"""Envoy stats for the plugin's custom metrics: one store per process, shared by name across VMs
(a gauge moved by two workers is their sum), and the per-VM metric ids that point into it.

Envoy (``source/extensions/common/wasm/context.cc``): every ``proxy_define_metric`` returns a NEW id,
the type in its low 2 bits (counter 0, gauge 1, histogram 2; ids step by 4 per type per VM),
all ids of one name and type reaching the same stat ``wasmcustom.<name>``. Counters refuse an
increment <= 0 (BadArgument); ``record`` adds to a counter, sets a gauge, records a histogram
sample; ``get`` of a histogram is BadArgument.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .abi import MetricType

U64 = 2**64 - 1
ENVOY_PREFIX = "wasmcustom."


@dataclass
class Stat:
    """One Envoy stat. ``value`` for counters and gauges; ``samples`` for histograms (in order)."""

    name: str
    type: MetricType
    value: int = 0
    samples: list[int] = field(default_factory=list)

    @property
    def envoy_name(self) -> str:
        """The name in Envoy's ``/stats`` (``wasmcustom.`` prefix)."""
        return ENVOY_PREFIX + self.name


class StatsStore:
    """Every custom stat of one Envoy process, by (name, type)."""

    def __init__(self) -> None:
        self._stats: dict[tuple[str, MetricType], Stat] = {}

    def stat(self, name: str, mtype: MetricType) -> Stat:
        """The stat, created at 0 on first use (Envoy's ``counterFromElements`` & co.)."""
        key = (name, mtype)
        found = self._stats.get(key)
        if found is None:
            found = self._stats[key] = Stat(name, mtype)
        return found

    def all(self) -> list[Stat]:
        """Every stat, in definition order."""
        return list(self._stats.values())

    def find(self, name: str) -> list[Stat]:
        """Stats called ``name`` (one per type defined)."""
        return [s for s in self._stats.values() if s.name == name]


class MetricIds:
    """One VM's id table (``Wasm::counters_``, ``gauges_``, ``histograms_``)."""

    def __init__(self, store: StatsStore) -> None:
        self._store = store
        self._next = {t: int(t) for t in MetricType}
        self.ids: dict[int, Stat] = {}

    def define(self, mtype: MetricType, name: str) -> int:
        """A fresh id for stat ``name`` of ``mtype``."""
        self._next[mtype] += 4
        mid = self._next[mtype] & 0xFFFFFFFF
        self.ids[mid] = self._store.stat(name, mtype)
        return mid

    def get(self, mid: int) -> Stat | None:
        """The stat behind ``mid`` if this VM defined it."""
        return self.ids.get(mid & 0xFFFFFFFF)
