"""The HTTP front's status table for tfgate.v1: complete, and the statuses google.rpc.Code names."""

from __future__ import annotations

import orjson

from tfgate.errors import MAX_MESSAGE_BYTES, Code, bounded
from tfgate.fronts.http import errors, v1_json


def test_every_code_has_an_http_status() -> None:
    assert set(errors.HTTP_STATUS) == set(Code)
    assert errors.HTTP_STATUS[Code.OK] == 200
    assert all(400 <= s < 600 for c, s in errors.HTTP_STATUS.items() if c is not Code.OK)


def test_the_usual_mapping() -> None:
    table = errors.HTTP_STATUS
    assert table[Code.INVALID_ARGUMENT] == 400 and table[Code.NOT_FOUND] == 404
    assert table[Code.RESOURCE_EXHAUSTED] == 429 and table[Code.UNAVAILABLE] == 503
    assert table[Code.DEADLINE_EXCEEDED] == 504 and table[Code.UNAUTHENTICATED] == 401
    assert table[Code.PERMISSION_DENIED] == 403 and table[Code.UNIMPLEMENTED] == 501


def test_error_body_names_the_code_and_bounds_the_message() -> None:
    body = orjson.loads(v1_json.error_json(Code.NOT_FOUND, bounded("no model 'x'")))
    assert body == {"code": 5, "status": "NOT_FOUND", "message": "no model 'x'", "details": []}
    long = bounded("y" * 100_000)
    assert len(long) == MAX_MESSAGE_BYTES and long.endswith("...")
