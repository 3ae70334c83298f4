"""Every status TF Serving can return maps to a deliberate outcome."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tfgate import errors
from tfgate.errors import NEVER_RETRY, Code


def test_codes_are_grpc_codes() -> None:
    assert [(c.name, c.value) for c in Code] == [(c.name, c.value[0]) for c in grpc.StatusCode]


def test_every_backend_code_is_mapped() -> None:
    unmapped = [c for c in Code if c is not Code.OK and c not in errors.BACKEND_CODES]
    assert unmapped == []
    assert Code.OK not in errors.BACKEND_CODES


@pytest.mark.parametrize(
    ("code", "expected", "verbatim"),
    [
        (Code.NOT_FOUND, Code.NOT_FOUND, True),
        (Code.INVALID_ARGUMENT, Code.INVALID_ARGUMENT, True),
        (Code.FAILED_PRECONDITION, Code.FAILED_PRECONDITION, True),
        (Code.UNAVAILABLE, Code.UNAVAILABLE, False),
        (Code.UNAUTHENTICATED, Code.INTERNAL, False),
        (Code.CANCELLED, Code.UNAVAILABLE, False),
    ],
)
def test_from_backend(code: Code, expected: Code, verbatim: bool) -> None:
    error = errors.from_backend(code, "the details")
    assert error.code == expected
    assert error.backend_code == code
    assert (error.message == "the details") is verbatim
    assert "the details" in error.message


def test_client_mistakes_are_never_retried() -> None:
    for code in (Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION):
        assert code in NEVER_RETRY


def test_code_of_an_outcome() -> None:
    assert errors.code_of(None) is Code.OK
    assert errors.code_of(errors.NotFound("x")) is Code.NOT_FOUND
    assert errors.code_of(errors.from_backend(Code.DATA_LOSS, "x")) is Code.INTERNAL
    assert errors.code_of(asyncio.CancelledError()) is Code.CANCELLED
    assert errors.code_of(KeyError("bug")) is Code.INTERNAL


def test_the_bounds_are_the_documented_ones() -> None:
    from tfgate import errors

    assert (errors.MAX_NAME, errors.MAX_MESSAGE_BYTES) == (1024, 2048)
    with open("docs/api.md") as doc:
        text = doc.read()
    assert "1024 characters" in text and "2048 UTF-8 bytes" in text
