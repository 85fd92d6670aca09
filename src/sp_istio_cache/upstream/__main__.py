"""``python -m sp_istio_cache.upstream``: run the upstream test application.

    python -m sp_istio_cache.upstream --host 127.0.0.1 --port 0 --port-file PATH
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sp_istio_cache.backend.serve import run

from .app import create_app
from .payload import DEFAULT_BUDGET, PayloadCache


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sp_istio_cache.upstream", description="Run the upstream test application.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default 0)")
    p.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    p.add_argument("--payload-cache-bytes", type=int, default=DEFAULT_BUDGET,
                   help=f"memory kept for generated bodies (default {DEFAULT_BUDGET})")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ... (default INFO)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(PayloadCache(args.payload_cache_bytes))
    return run(app, args.host, args.port, args.port_file)


if __name__ == "__main__":
    sys.exit(main())
