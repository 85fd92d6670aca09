"""Where the workbench finds its own files in a checkout.

The workbench builds the filter from ``filter/`` and renders ``envoy/`` templates, so it runs
from a clone of the repository (``pip install -e .``); these helpers name those places once.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FILTER_DIR = REPO_ROOT / "filter"
ENVOY_DIR = REPO_ROOT / "envoy"
DIST_WASM = FILTER_DIR / "dist" / "sp_istio_cache.wasm"
CONFIG_SCHEMA = FILTER_DIR / "config.schema.json"
#: where `up` records a detached stack; override with SP_ISTIO_CACHE_STATE_DIR
STATE_DIR = Path(os.environ.get("SP_ISTIO_CACHE_STATE_DIR", REPO_ROOT / ".sp-istio-cache"))
