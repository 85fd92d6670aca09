"""Envoy's header map semantics as a filter sees them through the ABI (``HeaderMapImpl``).

- keys are lower-cased on every write (``LowerCaseString``);
- pseudo-headers (``:name``) stay in front: a new one goes after the last pseudo-header, a regular
  one at the end (``HeaderList::insert``);
- replace = remove every entry of the key, then add (``setCopy``: ``remove(key); addCopy(key, v)``),
  so the replaced header moves to the end of its section;
- size = sum of key and value bytes (``byteSize``).

Values are ``str`` holding the raw bytes through surrogateescape, so any byte survives.
"""

from __future__ import annotations

from collections.abc import Iterable

Pairs = list[tuple[str, str]]


def text(raw: bytes) -> str:
    """Raw header bytes -> the str the host stores (lossless)."""
    return raw.decode("utf-8", "surrogateescape")


def raw(value: str) -> bytes:
    """Inverse of :func:`text`."""
    return value.encode("utf-8", "surrogateescape")


def lower_pairs(pairs: Iterable[tuple[str, str]]) -> Pairs:
    """Pairs with lower-cased keys, order kept (what Envoy's codec hands a filter)."""
    return [(k.lower(), v) for k, v in pairs]


def add(pairs: Pairs, key: str, value: str) -> None:
    """``addCopy``: append, pseudo-headers kept before regular ones."""
    key = key.lower()
    if key.startswith(":"):
        at = next((i for i, (k, _) in enumerate(pairs) if not k.startswith(":")), len(pairs))
        pairs.insert(at, (key, value))
    else:
        pairs.append((key, value))


def remove(pairs: Pairs, key: str) -> None:
    """``remove``: drop every entry of ``key``."""
    key = key.lower()
    pairs[:] = [(k, v) for k, v in pairs if k != key]


def replace(pairs: Pairs, key: str, value: str) -> None:
    """``setCopy``: remove every entry of ``key``, then add it once."""
    remove(pairs, key)
    add(pairs, key, value)


def first(pairs: Pairs, key: str) -> str | None:
    """The first value of ``key`` (Envoy's ``get`` returns entry[0] to the ABI)."""
    key = key.lower()
    return next((v for k, v in pairs if k == key), None)


def byte_size(pairs: Pairs) -> int:
    """``byteSize``: key plus value bytes over all entries."""
    return sum(len(raw(k)) + len(raw(v)) for k, v in pairs)
