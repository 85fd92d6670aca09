"""The backend's container image, built locally from this machine's Python with no registry pull.

:func:`assemble_context` writes a build context whose ``rootfs/`` is a complete, small Python
runtime for the backend (the recipe, ``Dockerfile`` beside this module, is ``FROM scratch``):

- the interpreter that runs the workbench (``sys.base_prefix``): binary, libpython, the standard
  library without its tests, GUI and terminal modules;
- a site-packages holding only the backend's dependencies (:data:`REQUIREMENTS` and what they
  require), copied file by file from the installed distributions (their RECORD), so the build
  needs no package index;
- the ``sp_istio_cache`` modules the backend imports (:data:`PACKAGE_FILES` and ``backend/``);
- every library ``ldd`` lists for the binary and the extension modules, at the paths ldd names;
- everything compiled to ``.pyc`` (unchecked hashes: the root filesystem is read-only at run time).

:func:`ensure_image` builds it with ``network_mode="none"`` unless an image with the same content
tag exists. ``sp-istio-cache backend-image build`` is the command line.
"""

from __future__ import annotations

import compileall
import importlib.metadata
import py_compile
import shutil
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

import sp_istio_cache
from sp_istio_cache.runtime.image import (
    ImageBuildError,
    build_image,
    context_hash,
    docker_client,
    shared_libraries,
)

IMAGE_REPOSITORY = "sp-istio-cache-backend"
RECIPE = Path(__file__).with_name("Dockerfile")
#: what the backend imports from PyPI (pyproject.toml's dependencies, backend part)
REQUIREMENTS = ("aiohttp", "uvloop", "opentelemetry-proto", "protobuf", "redis", "prometheus-client")
#: the modules of sp_istio_cache the backend imports, beside sp_istio_cache/backend/
PACKAGE_FILES = ("__init__.py", "paths.py", "serving.py", "attributes.py", "otlp.py", "otlpwire.py", "fingerprint.py")
#: the non-root user and group the image runs as
USER_ID = 65532
#: standard-library parts the backend never loads (tests, GUI, terminal, build files)
STDLIB_EXCLUDE = {"site-packages", "test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo", "ensurepip",
                  "lib2to3", "pydoc_data", "__pycache__", "curses", "venv", "distutils"}
DYNLOAD_EXCLUDE = ("_test", "_ctypes_test", "_xxtestfuzz", "_xxsubinterpreters", "xxlimited", "_tkinter",
                   "_curses", "readline", "nis", "ossaudiodev", "spwd", "_crypt", "audioop", "_dbm", "_gdbm")


@dataclass(frozen=True)
class BackendImage:
    """The outcome of :func:`ensure_image`: tag ``sp-istio-cache-backend:<version>-<hash>``,
    whether it was built (False: an image with this content existed), seconds, size in bytes."""

    tag: str
    built: bool
    seconds: float
    size_bytes: int


def distributions(roots: tuple[str, ...] = REQUIREMENTS) -> list[importlib.metadata.Distribution]:
    """The installed distributions ``roots`` need, with everything they require (markers
    evaluated for this interpreter, extras not followed), sorted by name.

    Raises:
        ImageBuildError: a required distribution is not installed.
    """
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in found:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise ImageBuildError(f"the backend needs {name}, which is not installed here "
                                  "(pip install -e . in the workbench's environment)") from None
        found[name] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return [found[name] for name in sorted(found)]


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst, follow_symlinks=True)


def _ignore_stdlib(directory: str, names: list[str]) -> set[str]:
    ignored = {n for n in names if n in STDLIB_EXCLUDE or n.startswith("config-")}
    if Path(directory).name == "lib-dynload":
        ignored |= {n for n in names if n.startswith(DYNLOAD_EXCLUDE)}
    return ignored


def assemble_context(dest: Path) -> None:
    """Write the build context (``Dockerfile``, ``rootfs/``, ``data/``) into ``dest``.

    Raises:
        ImageBuildError: a dependency is missing, or ldd cannot resolve a library.
    """
    prefix = Path(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    rootfs = dest / "rootfs"
    local = rootfs / "usr" / "local"
    stdlib = local / "lib" / version
    site = stdlib / "site-packages"
    _copy(prefix / "bin" / version, local / "bin" / "python3")
    libpython = prefix / "lib" / str(sysconfig.get_config_var("INSTSONAME"))
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        _copy(libpython, local / "lib" / libpython.name)
    shutil.copytree(prefix / "lib" / version, stdlib, ignore=_ignore_stdlib, symlinks=False)
    for dist in distributions():
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))  # a SimplePath; the files of a PathDistribution
            if ".." in file.parts or "__pycache__" in file.parts or not source.is_file():
                continue  # scripts outside site-packages, stale bytecode
            _copy(source, site / file)
    package = Path(sp_istio_cache.__file__).parent
    for name in PACKAGE_FILES:
        _copy(package / name, site / "sp_istio_cache" / name)
    shutil.copytree(package / "backend", site / "sp_istio_cache" / "backend",
                    ignore=shutil.ignore_patterns("__pycache__", "Dockerfile", "image.py", "cli.py"))
    compileall.compile_dir(str(local / "lib"), quiet=1, workers=0, stripdir=str(rootfs), prependdir="/",
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    _copy_libraries(rootfs, [local / "bin" / "python3", *local.rglob("*.so"), *local.rglob("*.so.*")], prefix)
    _etc(rootfs)
    (rootfs / "tmp").mkdir(mode=0o1777)
    (rootfs / "tmp").chmod(0o1777)
    (dest / "data").mkdir()
    shutil.copyfile(RECIPE, dest / "Dockerfile")


def _copy_libraries(rootfs: Path, binaries: list[Path], prefix: Path) -> None:
    """Copy what ldd lists for ``binaries`` to the same paths in ``rootfs`` (libraries of the
    interpreter's own prefix are already in place under /usr/local/lib)."""
    wanted: set[Path] = set()
    for binary in binaries:
        for lib in shared_libraries(binary, allow_none=True):
            if not lib.is_relative_to(prefix) and not lib.is_relative_to(rootfs):
                wanted.add(lib)
    for lib in sorted(wanted):
        _copy(lib.resolve(), rootfs / str(lib).lstrip("/"))


def _etc(rootfs: Path) -> None:
    etc = rootfs / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "passwd").write_text(f"root:x:0:0:root:/root:/sbin/nologin\n"
                                f"sp-cache:x:{USER_ID}:{USER_ID}:sp-istio-cache backend:/tmp:/sbin/nologin\n")
    (etc / "group").write_text(f"root:x:0:\nsp-cache:x:{USER_ID}:\n")
    certificates = Path("/etc/ssl/certs/ca-certificates.crt")
    if certificates.exists():  # for rediss:// (Redis over TLS)
        _copy(certificates, etc / "ssl" / "certs" / "ca-certificates.crt")


def ensure_image(client: Any = None, *, force: bool = False) -> BackendImage:
    """Build the backend image unless one with the same content tag exists; return what happened.

    The build runs with no network and pulls nothing (``FROM scratch``).

    Raises:
        RuntimeUnavailable: no Docker engine.
        ImageBuildError: assembly or build failed (the message has the cause or the build log).
    """
    t0 = time.monotonic()
    client = client or docker_client()
    with tempfile.TemporaryDirectory(prefix="sp-istio-cache-backend-image-") as tmp:
        context = Path(tmp)
        assemble_context(context)
        digest = context_hash(context)[:16]
        tag = f"{IMAGE_REPOSITORY}:{sp_istio_cache.__version__}-{digest}"
        image, built = build_image(client, context, tag, {"sp-istio-cache.content-hash": digest,
                                                          "sp-istio-cache.component": "backend"}, force)
    return BackendImage(tag, built, time.monotonic() - t0, int(image.attrs["Size"]))
