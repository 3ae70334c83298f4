"""The access log's escaping of caller-chosen values, without a server."""

from __future__ import annotations

import pytest

from tfgate.calls import MAX_LOGGED, loggable


@pytest.mark.parametrize("plain", ["half_plus_two", "m-1.2", "a/b:c@d+e", "3", "-"])
def test_plain_values_are_written_as_they_are(plain: str) -> None:
    assert loggable(plain) == plain


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("a b", '"a b"'),
        ("a\nb\rc\td", '"a\\nb\\rc\\td"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("mod\u00e8le\u2028", '"mod\\xe8le\\u2028"'),
        ("\x00\x1b[31m", '"\\x00\\x1b[31m"'),
        ("", '""'),
    ],
)
def test_other_values_are_quoted_and_escaped(value: str, written: str) -> None:
    assert loggable(value) == written


def test_long_values_are_cut_saying_how_long_they_were() -> None:
    shown = loggable("x" * 100_000)
    assert shown == '"' + "x" * MAX_LOGGED + '"...(100000 characters)'
    assert len(loggable("\n" * 100_000)) < 4 * MAX_LOGGED
