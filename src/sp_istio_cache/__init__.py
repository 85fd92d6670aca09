"""SP-Istio Cache: a transparent HTTP cache for Istio/Envoy sidecars (proxy-wasm filter) and the
workbench that builds, runs, loads and charts it."""

__version__ = "0.1.0"
