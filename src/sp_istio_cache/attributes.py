"""The span attribute keys of the filter-backend protocol, in one place (docs/protocol.md
"Attributes"; ``filter/src/protocol.zig`` has the same keys, and the golden vectors in
``filter/testdata/protocol_golden.json`` hold both sides to them).

Names follow the OpenTelemetry semantic conventions where one exists (``http.request.method``,
``url.path``, ``server.address``, ``http.response.status_code``, ``service.name``); the
cache's own keys live under ``sp.``.
"""

#: the instrumentation scope of every span
SCOPE_NAME = "sp-istio-cache"

ATTR_SPAN_TYPE = "sp.span.type"
ATTR_METHOD = "http.request.method"
ATTR_SCHEME = "url.scheme"
ATTR_PATH = "url.path"
ATTR_AUTHORITY = "server.address"
ATTR_REQUEST_HEADER_PREFIX = "http.request.header."
ATTR_REQUEST_BODY = "http.request.body"
ATTR_SERVICE_NAME = "sp.service.name"
ATTR_DIRECTION = "sp.traffic.direction"
ATTR_SESSION_ID = "sp.session.id"
ATTR_CACHE_KEY = "sp.cache.key"
ATTR_STATUS = "http.response.status_code"
ATTR_RESPONSE_HEADER_PREFIX = "http.response.header."
ATTR_RESPONSE_BODY = "http.response.body"
ATTR_VARIANT = "sp.cache.variant"
ATTR_REQUEST_TIME = "sp.cache.request_time_ms"
ATTR_RESPONSE_TIME = "sp.cache.response_time_ms"
ATTR_RETAIN = "sp.cache.retain_seconds"
ATTR_SIGNATURE = "sp.cache.signature"
ATTR_INVALIDATE_KEYS = "sp.cache.invalidate.keys"
RESOURCE_SERVICE_NAME = "service.name"
