"""The HTTP front's shared pieces, without a server."""

from __future__ import annotations

import threading
import time

import pytest

from tfgate.calls import Call
from tfgate.errors import DeadlineExceeded
from tfgate.fronts.http.base import Converter

pytestmark = pytest.mark.asyncio


def _thread(_: bytes) -> int:
    return threading.get_ident()


async def test_small_bodies_convert_inline_and_large_ones_in_a_thread() -> None:
    convert = Converter(inline_below=10, at_once=1)
    call = Call("http", "Predict", time.monotonic() + 5)
    assert await convert(_thread, b"small", call) == threading.get_ident()
    assert await convert(_thread, b"x" * 100, call) != threading.get_ident()


async def test_a_caller_waits_for_a_turn_only_until_its_deadline() -> None:
    convert = Converter(inline_below=0, at_once=1)
    await convert._turns.acquire()  # the one turn is taken
    with pytest.raises(DeadlineExceeded, match="large body"):
        await convert(_thread, b"x", Call("http", "Predict", time.monotonic() + 0.1))
    convert._turns.release()
    assert await convert(_thread, b"x", Call("http", "Predict", time.monotonic() + 1))
