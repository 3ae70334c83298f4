"""Codes as HTTP statuses: the one table for tfgate.v1 over HTTP, and the error bodies.

tfgate.v1's routes answer the HTTP status google.rpc.Code documents for each code (the mapping
grpc-gateway and Google's APIs use) with ``{"code": "NAME", "message": "..."}``. TF Serving's
REST API keeps TF Serving's own table and body (tfgate.fronts.http.tfserving_json). Both tables
are checked complete by tests/test_fronts_http_errors.py. UNAUTHENTICATED (401) and
PERMISSION_DENIED (403) come from tfgate.policy.gate; a 401 carries ``WWW-Authenticate``.
"""

from __future__ import annotations

from typing import Final

from tfgate.errors import Code

HTTP_STATUS: Final[dict[Code, int]] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}

# An HTTP status tfgate answers before a request reaches the core (routing, body size), as the
# code its tfgate.v1 body names.
CODE_OF_STATUS: Final[dict[int, Code]] = {
    400: Code.INVALID_ARGUMENT,
    404: Code.NOT_FOUND,
    405: Code.UNIMPLEMENTED,
    413: Code.RESOURCE_EXHAUSTED,
}

# Headers an answer with the code carries, on every route: a 401 names the scheme tfgate takes
# (RFC 9110 section 11.6.1, RFC 6750 for Bearer).
HEADERS: Final[dict[Code, dict[str, str]]] = {
    Code.UNAUTHENTICATED: {"WWW-Authenticate": 'Bearer realm="tfgate"'},
}
