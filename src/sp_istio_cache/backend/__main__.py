"""``python -m sp_istio_cache.backend``: run the cache backend.

    python -m sp_istio_cache.backend --host 127.0.0.1 --port 0 --storage sqlite \
        --db PATH --default-ttl 300 --port-file PATH
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sp_istio_cache.paths import STATE_DIR
from sp_istio_cache.serving import run_service, service_parser

from .app import DEFAULT_MAX_BODY, create_app
from .storage import create_storage, storage_names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = service_parser("python -m sp_istio_cache.backend", "Run the cache backend (docs/protocol.md).")
    p.add_argument("--storage", default="sqlite", choices=storage_names(),
                   help="storage implementation (default sqlite)")
    p.add_argument("--db", type=Path, default=STATE_DIR / "backend.sqlite",
                   help="SQLite file for --storage sqlite (default <checkout>/.sp-istio-cache/backend.sqlite)")
    p.add_argument("--default-ttl", type=float, default=300.0,
                   help="seconds of freshness when a store carries no sp.cache.ttl_seconds (default 300)")
    p.add_argument("--public-key", help="require this x-public-key on protocol calls (401 otherwise)")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY,
                   help=f"largest accepted request body (default {DEFAULT_MAX_BODY})")
    p.add_argument("--evict-interval", type=float, default=60.0,
                   help="seconds between sweeps of expired entries; 0 disables (default 60)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = {"path": args.db} if args.storage == "sqlite" else {}
    storage = create_storage(args.storage, **options)
    app = create_app(
        storage,
        default_ttl=args.default_ttl,
        public_key=args.public_key,
        max_body_bytes=args.max_body_bytes,
        evict_interval=args.evict_interval,
    )
    return run_service(app, args)


if __name__ == "__main__":
    sys.exit(main())
