"""Istio deployment artefacts: render (WasmPlugin / EnvoyFilter / ServiceEntry / DestinationRule),
validate (schemas, module ABI, a boot of the real Envoy) and deploy (kubectl)."""
