"""tfgate.plans.arguments: one table of a section read by type, each problem named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfgate.config import ConfigError
from tfgate.plans.arguments import PipelineConfigError, Table


def table(**values: object) -> Table:
    return Table(values, "here", Path("/srv/config"))


def test_typed_reads_and_their_defaults() -> None:
    t = table(s="x", i=3, f=0.5, shape=[-1, 4], c=[1, 2])
    assert t.string("s") == "x" and t.string("absent", None) is None
    assert t.integer("i") == 3 and t.integer("absent", 7) == 7
    assert t.number("f") == 0.5 and t.number("absent") is None
    assert t.shape("shape") == (-1, 4)
    np.testing.assert_array_equal(t.channels("c"), [1.0, 2.0])
    assert t.has("s") and not t.has("absent")
    t.finish()


@pytest.mark.parametrize(
    ("read", "needle"),
    [
        (lambda t: t.raw("absent"), "here: 'absent' is required"),
        (lambda t: t.string("i"), "here: 'i' must be a string, got 3"),
        (lambda t: t.integer("b"), "here: 'b' must be an integer, got True"),
        (lambda t: t.number("b"), "here: 'b' must be a number, got True"),
        (lambda t: t.shape("shape"), "here: 'shape' must be a list of integers, got 'x'"),
        (lambda t: t.channels("s"), "here: 's' must be a number or a list of numbers, got 'x'"),
        (lambda t: t.channels("e"), "here: e must be a number or a non-empty list of numbers"),
    ],
)
def test_bad_values_are_named(read, needle: str) -> None:
    t = table(s="x", i=3, b=True, e=[], shape="x")
    with pytest.raises(PipelineConfigError) as info:
        read(t)
    assert isinstance(info.value, ConfigError)
    assert needle in str(info.value)


def test_finish_names_a_key_nobody_asked_for() -> None:
    t = table(op="clip", min=0, mni=4)
    t.number("min")
    t.number("max")
    with pytest.raises(PipelineConfigError) as info:
        t.finish()
    assert str(info.value) == "here: unknown parameter 'mni' (parameters: max, min)"
    with pytest.raises(PipelineConfigError, match=r"unknown parameter 'x' \(parameters: none\)"):
        table(x=1).finish()


def test_lines_are_read_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "labels.txt").write_text("a\r\nb\n", encoding="utf-8")
    t = Table({"file": "sub/../sub/labels.txt"}, "here", tmp_path)
    assert t.lines("file") == ("sub/../sub/labels.txt", ["a", "b"])
    assert t.path("sub/../sub/labels.txt") == tmp_path / "sub" / "labels.txt"
