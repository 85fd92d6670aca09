"""The backend image: assembled from this machine's Python with only the backend's dependencies,
built with no network, and run in Docker read-only as a non-root user, serving a store and a
lookup."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid

import docker.errors
import pytest

from sp_istio_cache.backend import image as backend_image
from sp_istio_cache.otlp import decode_candidates
from sp_istio_cache.runtime import RuntimeUnavailable
from sp_istio_cache.runtime.image import MANAGED_LABEL, docker_client
from tests.backend.spans import RESPONSE, lookup_body, request, store_body

DISTRIBUTIONS = ["aiohappyeyeballs", "aiohttp", "aiosignal", "attrs", "frozenlist", "idna", "multidict",
                 "opentelemetry-proto", "prometheus_client", "propcache", "protobuf", "redis", "typing_extensions",
                 "uvloop", "yarl"]
KEY = "image-test-key-0123456789abcdef"
#: imports every module of the copied sp_istio_cache.backend from the site-packages in argv[1]
PROBE = """
import pkgutil, sys
sys.path.insert(0, sys.argv[1])
import sp_istio_cache, sp_istio_cache.backend as backend
for info in pkgutil.walk_packages(backend.__path__, "sp_istio_cache.backend."):
    __import__(info.name)
print(sp_istio_cache.__file__)
"""


def test_only_the_backend_dependencies_are_taken():
    assert [d.metadata["Name"] for d in backend_image.distributions()] == DISTRIBUTIONS


def test_context_is_a_small_python_runtime(tmp_path):
    backend_image.assemble_context(tmp_path)
    rootfs = tmp_path / "rootfs"
    stdlib = rootfs / "usr/local/lib/python3.11"
    site = stdlib / "site-packages"
    assert (rootfs / "usr/local/bin/python3").stat().st_mode & 0o111
    assert (rootfs / "usr/local/lib/libpython3.11.so.1.0").is_file()
    assert (rootfs / "lib64/ld-linux-x86-64.so.2").is_file()
    assert {p.name for p in (rootfs / "lib/x86_64-linux-gnu").iterdir()} >= {
        "libc.so.6", "libssl.so.3", "libcrypto.so.3", "libsqlite3.so.0"}
    assert not (stdlib / "test").exists() and not (stdlib / "tkinter").exists()
    assert not list((stdlib / "lib-dynload").glob("_tkinter*"))
    dist_infos = sorted(p.name.split("-")[0].lower().replace("_", "-") for p in site.glob("*.dist-info"))
    assert dist_infos == sorted(d.lower().replace("_", "-") for d in DISTRIBUTIONS)
    ours = sorted(p.relative_to(site / "sp_istio_cache").as_posix() for p in (site / "sp_istio_cache").rglob("*.py"))
    assert "backend/app.py" in ours and "otlp.py" in ours and "stack.py" not in ours and "backend/image.py" not in ours
    assert (site / "sp_istio_cache/backend/__pycache__/app.cpython-311.pyc").is_file()
    # every backend module imports from the image's site-packages alone: no module it needs is missing
    probe = subprocess.run([sys.executable, "-I", "-c", PROBE, str(site)], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and probe.stdout.split() == [str(site / "sp_istio_cache/__init__.py")], probe.stderr
    assert "sp-cache:x:65532:65532:" in (rootfs / "etc/passwd").read_text()
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (tmp_path / "Dockerfile").read_text().startswith("# The cache backend's image")
    assert sum(p.stat().st_size for p in rootfs.rglob("*") if p.is_file()) < 160 * 2**20


@pytest.fixture(scope="module")
def engine():
    try:
        return docker_client()
    except RuntimeUnavailable as exc:
        pytest.skip(str(exc))


class RecordingImages:
    """Wraps the SDK's image collection to record the arguments of ``build``."""

    def __init__(self, images) -> None:
        self._images = images
        self.builds: list[dict] = []

    def build(self, **kwargs):
        self.builds.append(kwargs)
        return self._images.build(**kwargs)

    def __getattr__(self, name):
        return getattr(self._images, name)


class RecordingClient:
    def __init__(self, client) -> None:
        self._client = client
        self.images = RecordingImages(client.images)

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.mark.docker
def test_image_builds_offline_and_serves_read_only_as_non_root(engine, tmp_path):
    recording = RecordingClient(engine)
    built = backend_image.ensure_image(recording, force=True)
    assert [(b["network_mode"], b["pull"]) for b in recording.images.builds] == [("none", False)]
    image = engine.images.get(built.tag)
    assert built.tag.startswith("sp-istio-cache-backend:0.1.0-")
    assert image.labels[MANAGED_LABEL] == "true"
    assert image.attrs["Config"]["User"] == "65532:65532"
    assert image.attrs["Config"]["Healthcheck"]["Test"][0] == "CMD"
    assert len(image.attrs["RootFS"]["Layers"]) == 2  # FROM scratch: COPY rootfs and data (the import check adds none)
    assert 60 * 2**20 < built.size_bytes < 160 * 2**20
    assert backend_image.ensure_image(engine).built is False  # same content: same tag, no rebuild

    name = f"sp-cache-backend-test-{uuid.uuid4().hex[:8]}"
    volume = engine.volumes.create(name, labels={MANAGED_LABEL: "true"})
    container = None
    try:
        container = engine.containers.run(
            built.tag, detach=True, name=name, read_only=True, tmpfs={"/tmp": "rw,size=16m"},
            volumes={name: {"bind": "/data", "mode": "rw"}}, environment={"SP_CACHE_BACKEND_KEY": KEY},
            ports={"8080/tcp": ("127.0.0.1", None)}, labels={MANAGED_LABEL: "true"})
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
        base = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _get(base + "/healthz") == 200, 30, lambda: container.logs().decode())
        assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True
        assert [row[0] for row in container.top()["Processes"]] == ["65532"]
        req = request(path="/through-the-image")
        assert _post(base + "/v1/traces", store_body(req)) == (200, b"stored 1\n")
        status, body = _post(base + "/v1/inject", lookup_body(req))
        assert status == 200 and decode_candidates(body)[0].response == RESPONSE
        assert _post(base + "/v1/inject", lookup_body(req), key="wrong-key-0123456789")[0] == 401
        _wait_for(lambda: _health(container) == "healthy", 40, lambda: str(container.attrs["State"]))
        logs = container.logs().decode()
        assert "authentication: x-public-key required" in logs and "Traceback" not in logs
    finally:
        if container is not None:
            container.remove(force=True)
        volume.remove(force=True)
    assert engine.containers.list(all=True, filters={"name": name}) == []
    with pytest.raises(docker.errors.NotFound):
        engine.volumes.get(name)


def _health(container) -> str:
    container.reload()
    return container.attrs["State"].get("Health", {}).get("Status", "")


def _wait_for(condition, timeout_s: float, describe) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, describe()
        time.sleep(0.2)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status
    except OSError:
        return 0


def _post(url: str, body: bytes, key: str = KEY) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"x-public-key": key, "content-type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(req, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
