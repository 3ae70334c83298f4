"""Every status TF Serving can return maps to a deliberate outcome."""

from __future__ import annotations

import grpc
import pytest

from tfgate import errors
from tfgate.config import NEVER_RETRY


def test_every_backend_code_is_mapped() -> None:
    unmapped = [
        c for c in grpc.StatusCode if c is not grpc.StatusCode.OK and c not in errors.BACKEND_CODES
    ]
    assert unmapped == []
    assert grpc.StatusCode.OK not in errors.BACKEND_CODES


@pytest.mark.parametrize(
    ("code", "expected", "verbatim"),
    [
        (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.NOT_FOUND, True),
        (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT, True),
        (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.FAILED_PRECONDITION, True),
        (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE, False),
        (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL, False),
        (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE, False),
    ],
)
def test_from_backend(code: grpc.StatusCode, expected: grpc.StatusCode, verbatim: bool) -> None:
    error = errors.from_backend(code, "the details")
    assert error.code == expected
    assert error.backend_code == code
    assert (error.message == "the details") is verbatim
    assert "the details" in error.message


def test_client_mistakes_are_never_retried() -> None:
    for code in ("INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"):
        assert code in NEVER_RETRY
