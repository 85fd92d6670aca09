"""``python -m sp_istio_cache.backend``: run the cache backend (docs/backend.md).

    SP_CACHE_BACKEND_KEY=... python -m sp_istio_cache.backend --port 8080 --storage sqlite --db PATH
    python -m sp_istio_cache.backend --storage redis --redis-url redis://host:6379/0 \\
        --key-file /run/secrets/backend-key --workers 4

The backend refuses to start without a key unless ``--allow-anonymous`` says so.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from sp_istio_cache.paths import STATE_DIR
from sp_istio_cache.serving import configure_logging, service_parser

from .settings import DEFAULT_MAX_BODY, DEFAULT_MAX_RETAIN_S, KEY_ENV, check_key
from .storage import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_VARIANTS,
    MAX_VARIANTS,
    StorageUnavailable,
    create_storage,
    storage_class,
    storage_names,
)

log = logging.getLogger("sp_istio_cache.backend")



class UsageError(Exception):
    """A command line that cannot run; the message names the option."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = service_parser("python -m sp_istio_cache.backend", "Run the cache backend (docs/protocol.md, docs/backend.md).")
    p.add_argument("--storage", default="sqlite", choices=storage_names(),
                   help="storage implementation (default sqlite)")
    p.add_argument("--db", type=Path, default=STATE_DIR / "backend.sqlite",
                   help="SQLite file for --storage sqlite (default <checkout>/.sp-istio-cache/backend.sqlite)")
    p.add_argument("--redis-url", default=os.environ.get("SP_CACHE_REDIS_URL", "redis://127.0.0.1:6379/0"),
                   help="server for --storage redis (default $SP_CACHE_REDIS_URL or redis://127.0.0.1:6379/0)")
    p.add_argument("--redis-prefix", default="sp-cache:", help="start of every Redis key name (default sp-cache:)")
    p.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                   help=f"most bytes of stored spans, LRU eviction beyond (default {DEFAULT_MAX_BYTES})")
    p.add_argument("--max-entries", type=int, default=DEFAULT_MAX_ENTRIES,
                   help=f"most stored entries, LRU eviction beyond (default {DEFAULT_MAX_ENTRIES})")
    p.add_argument("--max-variants", type=int, default=DEFAULT_MAX_VARIANTS,
                   help=f"most variants (Vary) kept per key, those that expire first dropped beyond; set it to "
                        f"the filter's max_variants (1..{MAX_VARIANTS}, default {DEFAULT_MAX_VARIANTS})")
    p.add_argument("--key", help=f"the backend key (visible in the process list: prefer --key-file or ${KEY_ENV})")
    p.add_argument("--key-file", type=Path, help="file holding the backend key (one line; e.g. a mounted Secret)")
    p.add_argument("--allow-anonymous", action="store_true",
                   help="accept calls without a key: anyone who reaches the port can read and plant entries")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY,
                   help=f"largest accepted request body (default {DEFAULT_MAX_BODY})")
    p.add_argument("--max-retain-seconds", type=int, default=DEFAULT_MAX_RETAIN_S,
                   help=f"cap on sp.cache.retain_seconds (default {DEFAULT_MAX_RETAIN_S})")
    p.add_argument("--evict-interval", type=float, default=60.0,
                   help="seconds between sweeps of expired entries; 0 disables (default 60)")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (default 1)")
    p.add_argument("--metrics-dir", type=Path,
                   help="prometheus-client multiprocess directory for --workers > 1 (default: a fresh temporary one)")
    return p.parse_args(argv)


def resolve_key(args: argparse.Namespace) -> tuple[str | None, str]:
    """The backend key and where it came from (--key-file, $SP_CACHE_BACKEND_KEY, --key).

    Raises:
        UsageError: no key and no --allow-anonymous, both, an unreadable file, or a bad key.
    """
    sources = []
    if args.key_file is not None:
        try:
            sources.append((args.key_file.read_text().strip(), f"--key-file {args.key_file}"))
        except OSError as exc:
            raise UsageError(f"--key-file: cannot read {args.key_file}: {exc.strerror}") from None
    if os.environ.get(KEY_ENV):
        sources.append((os.environ[KEY_ENV], f"${KEY_ENV}"))
    if args.key:
        sources.append((args.key, "--key"))
    if args.allow_anonymous:
        if sources:
            raise UsageError(f"--allow-anonymous contradicts the key given by {sources[0][1]}")
        return None, "--allow-anonymous"
    if not sources:
        raise UsageError(f"the backend needs a key: --key-file FILE, ${KEY_ENV} or --key "
                         "(or --allow-anonymous to accept every caller)")
    key, source = sources[0]
    try:
        return check_key(key), source
    except ValueError as exc:
        raise UsageError(f"{source}: {exc}") from None


def storage_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword options of :func:`create_storage` for the chosen storage."""
    options: dict[str, Any] = {"max_bytes": args.max_bytes, "max_entries": args.max_entries,
                               "max_variants": args.max_variants}
    if args.storage == "sqlite":
        options["path"] = args.db
    elif args.storage == "redis":
        options.update(url=args.redis_url, prefix=args.redis_prefix)
    return options


def check_usage(args: argparse.Namespace) -> None:
    """Refuse option combinations that cannot work.

    Raises:
        UsageError: naming the option.
    """
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.workers > 1 and not storage_class(args.storage).shared:
        raise UsageError(f"--storage {args.storage} is private to one process; --workers {args.workers} "
                         "needs sqlite or redis")
    for name in ("max_bytes", "max_entries", "max_body_bytes"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 1 <= args.max_variants <= MAX_VARIANTS:
        raise UsageError(f"--max-variants must be 1..{MAX_VARIANTS}, got {args.max_variants}")
    if args.max_retain_seconds < 0:
        raise UsageError(f"--max-retain-seconds must be >= 0, got {args.max_retain_seconds}")


async def _preflight(options: dict[str, Any], name: str) -> None:
    storage = create_storage(name, **options)
    try:
        await storage.open()
    finally:
        await storage.close()


def _multiprocess_metrics(args: argparse.Namespace) -> Path | None:
    """Point prometheus-client at a multiprocess directory before it is first imported; return
    the directory when it is a temporary one to remove at exit."""
    if args.workers == 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    if args.metrics_dir is not None:
        directory, temporary = args.metrics_dir, None
        directory.mkdir(parents=True, exist_ok=True)
    elif os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        directory, temporary = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]), None
    else:
        directory = temporary = Path(tempfile.mkdtemp(prefix="sp-cache-metrics-"))
    for stale in directory.glob("*.db"):  # values of an earlier run (prometheus-client's advice)
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return temporary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        check_usage(args)
        key, key_source = resolve_key(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    temporary_metrics = _multiprocess_metrics(args)
    try:
        return _serve(args, key, key_source)
    finally:
        if temporary_metrics is not None:
            shutil.rmtree(temporary_metrics, ignore_errors=True)


def _serve(args: argparse.Namespace, key: str | None, key_source: str) -> int:
    from sp_istio_cache.serving import bind, run

    from .app import create_app, quiet_client_errors
    from .workers import run_workers

    quiet_client_errors()
    options = storage_options(args)
    try:
        asyncio.run(_preflight(options, args.storage))
    except (StorageUnavailable, OSError, ValueError) as exc:
        log.error("storage %s cannot be used: %s", args.storage, exc)
        return 1
    if key is None:
        log.warning("ANONYMOUS ACCESS (--allow-anonymous): any client that reaches %s:%s can read, plant and "
                    "delete cache entries", args.host, args.port)
    else:
        log.info("authentication: x-public-key required (key from %s)", key_source)

    def app():
        return create_app(create_storage(args.storage, **options), key=key, max_body_bytes=args.max_body_bytes,
                          max_retain_seconds=args.max_retain_seconds, evict_interval=args.evict_interval)

    sock = bind(args.host, args.port)
    if args.workers == 1:
        return run(app(), args.host, args.port, args.port_file, sock)
    log.info("%d worker processes on %s:%d", args.workers, args.host, sock.getsockname()[1])
    return run_workers(args.workers, sock, lambda s: run(app(), args.host, args.port, None, s), args.port_file)


if __name__ == "__main__":
    sys.exit(main())
