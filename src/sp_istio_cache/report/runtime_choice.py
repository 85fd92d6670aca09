"""Where the report runs Envoy: in Docker with the sidecar's limits whenever an engine answers.

DESIGN.md asks for Envoy "in Docker with sidecar-like CPU/memory limits", so that "1 CPU,
128 MiB" is *measured*: the container's CFS quota and memory limit are the budget's. ``runtime``:

- ``auto`` (default): ``docker`` when the Docker engine answers a ping, else ``local``, and the
  summary says the limits were not enforced (with the engine's answer);
- ``docker``: the container, or the step fails naming why the engine is unavailable;
- ``local``: a child process; the limits are stated, not enforced.

The choice is made once per report and written to ``runtime.json`` (read by every later step
and by the summary).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..runtime.docker import parse_memory as memory_bytes

RUNTIME_FILE = "runtime.json"


@dataclass(frozen=True)
class RuntimeChoice:
    """``name`` (``local``/``docker``), the options the runtime gets, whether the sidecar limits
    are enforced, and a sentence for the summary."""

    requested: str
    name: str
    options: dict[str, Any]
    enforced: bool
    cpu_limit: float
    memory_limit_bytes: int
    note: str


def _engine() -> str | None:
    """None when a Docker engine answers, else why not."""
    from ..runtime.image import RuntimeUnavailable, docker_client

    try:
        docker_client().close()
    except RuntimeUnavailable as exc:
        return str(exc)
    return None


def choose_runtime(requested: str, cpu_limit: float, memory_limit: int | str) -> RuntimeChoice:
    """Decide (module docstring).

    Raises:
        ValueError: unknown ``requested`` or a bad limit; RuntimeUnavailable: ``docker`` asked
            and no engine answers.
    """
    mem = memory_bytes(memory_limit)
    if requested not in ("auto", "docker", "local"):
        raise ValueError(f"runtime must be auto, docker or local, got {requested!r}")
    if cpu_limit <= 0 or mem is None:
        raise ValueError(f"sidecar limits must be positive (cpu {cpu_limit}, memory {memory_limit!r})")
    limits = f"{cpu_limit:g} CPU, {mem / 2**20:g} MiB"
    why = _engine() if requested != "local" else "runtime: local was requested"
    if why is None:
        return RuntimeChoice(requested, "docker", {"cpu_limit": cpu_limit, "memory_limit": mem}, True, cpu_limit,
                             mem, f"Envoy ran in a Docker container limited to {limits}: "
                                  "the sidecar budget was enforced")
    if requested == "docker":
        from ..runtime.image import RuntimeUnavailable

        raise RuntimeUnavailable(why)
    return RuntimeChoice(requested, "local", {}, False, cpu_limit, mem,
                         f"Envoy ran as a local process: the sidecar limits ({limits}) were NOT enforced ({why})")


def runtime_for(out_dir: Path, requested: str, cpu_limit: float, memory_limit: int | str) -> RuntimeChoice:
    """The report's choice: read from ``out_dir/runtime.json`` when an earlier step made it,
    else made now and written there."""
    path = Path(out_dir) / RUNTIME_FILE
    if path.is_file():
        return RuntimeChoice(**json.loads(path.read_text()))
    choice = choose_runtime(requested, cpu_limit, memory_limit)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(choice), indent=2) + "\n")
    return choice
