"""``python -m sp_istio_cache.upstream``: run the upstream test application.

    python -m sp_istio_cache.upstream --host 127.0.0.1 --port 0 --port-file PATH
"""

from __future__ import annotations

import argparse
import sys

from sp_istio_cache.serving import run_service, service_parser

from .app import create_app
from .payload import DEFAULT_BUDGET, PayloadCache


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = service_parser("python -m sp_istio_cache.upstream", "Run the upstream test application.")
    p.add_argument("--payload-cache-bytes", type=int, default=DEFAULT_BUDGET,
                   help=f"memory kept for generated bodies (default {DEFAULT_BUDGET})")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app = create_app(PayloadCache(args.payload_cache_bytes))
    return run_service(app, args)


if __name__ == "__main__":
    sys.exit(main())
