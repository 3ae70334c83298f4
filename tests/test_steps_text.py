"""tfgate.plans.steps.text without a server: lowercase, tokenize, lookup and pad."""

from __future__ import annotations

import numpy as np
import pytest

from tests.step_cases import VOCAB, ragged, rows_of, run_error, texts
from tfgate.plans import steps
from tfgate.plans.steps import Lookup, Lowercase, Pad, Ragged, Tokenize


@pytest.mark.parametrize(
    ("step", "given", "expected"),
    [
        (Tokenize(), ["A great  movie", "", "\tone\n"], [["A", "great", "movie"], [], ["one"]]),
        (
            Tokenize(r"[a-z0-9']+"),
            ["it's a great movie!!", "??", "x1 y2"],
            [["it's", "a", "great", "movie"], [], ["x1", "y2"]],
        ),
        (Tokenize(r"\w+|[^\w\s]"), ["hi, you"], [["hi", ",", "you"]]),
    ],
)
def test_tokenize(step: Tokenize, given: list[str], expected: list[list[str]]) -> None:
    assert rows_of(step.apply("x", texts(*given))) == expected


def test_lowercase_keeps_shape_and_unicode() -> None:
    out = Lowercase().apply("x", texts("ÀB c", "Straße").reshape(2, 1))
    assert out.shape == (2, 1) and out.ravel().tolist() == ["àb c", "straße"]
    assert Lowercase().apply("x", texts()).shape == (0,)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([["a", "great", "movie"], ["terrible", "a"], []], [[2, 3, 4], [1, 2], []]),
        ([], []),
    ],
)
def test_lookup(rows: list[list[str]], expected: list[list[int]]) -> None:
    step = Lookup("vocab.txt", VOCAB, oov_id=1)
    out = step.apply("x", ragged(rows) if rows else Ragged(texts(), np.zeros(0, np.int64)))
    assert out.values.dtype == np.int64
    assert rows_of(out) == expected
    assert step.max_id == 4
    assert Lookup("v", VOCAB, oov_id=99).max_id == 99


@pytest.mark.parametrize(
    ("step", "rows", "expected"),
    [
        (Pad(4, 0), [[5, 6], [], [1, 2, 3, 4, 5, 6]], [[5, 6, 0, 0], [0, 0, 0, 0], [1, 2, 3, 4]]),
        (Pad(3, -1, "start"), [[1, 2, 3, 4, 5], [7]], [[3, 4, 5], [7, -1, -1]]),
        (Pad(2, 9), [], np.zeros((0, 2), np.int64)),
        (Pad(2, ""), [["a", "b", "c"], ["d"]], [["a", "b"], ["d", ""]]),
    ],
)
def test_pad(step: Pad, rows: list, expected) -> None:
    value = ragged(rows) if rows else Ragged(np.zeros(0, np.int64), np.zeros(0, np.int64))
    out = step.apply("x", value)
    assert out.shape == np.asarray(expected).shape
    assert out.tolist() == np.asarray(expected).tolist()


def test_text_pipeline_end_to_end() -> None:
    pipeline = (Lowercase(), Tokenize(), Lookup("v", VOCAB, 1), Pad(5, 0))
    out = steps.run("input 'text'", pipeline, texts("A GREAT movie", "a bad a bad a bad"))
    assert isinstance(out, np.ndarray)
    assert out.tolist() == [[2, 3, 4, 0, 0], [2, 1, 2, 1, 2]]


def test_runtime_errors_name_the_tensor_and_step() -> None:
    message = run_error(Tokenize(), texts("a", "b").reshape(1, 2))
    assert "needs a 1-D batch of texts, got [1, 2]" in message


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: Tokenize("(a)b"), "capturing group"),
        (lambda: Tokenize("[a"), "not a regular expression"),
        (lambda: Tokenize("a*"), "matches the empty string"),
        (lambda: Pad(0, 0), "length must be at least 1"),
        (lambda: Pad(3, 0, "middle"), "truncate must be"),  # type: ignore[arg-type]
        (lambda: Lookup("v", VOCAB, -1), "oov_id must not be negative"),
    ],
)
def test_bad_parameters(build, needle: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        build()
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("step", "kind", "gives"),
    [
        (Lowercase(), "text", "text"),
        (Tokenize(), "text", "tokens"),
        (Lookup("v", VOCAB, 1), "tokens", "ids"),
        (Pad(3, 0), "ids", "int"),
        (Pad(3, ""), "tokens", "text"),
    ],
)
def test_kinds(step, kind, gives) -> None:
    assert kind in step.accepts
    assert step.kind(kind) == gives


@pytest.mark.parametrize(
    ("step", "kind"), [(Pad(3, ""), "ids"), (Pad(3, 0), "tokens")], ids=["ids", "tokens"]
)
def test_pad_value_must_match_what_it_pads(step: Pad, kind) -> None:
    with pytest.raises(ValueError, match="so value must be"):
        step.kind(kind)


@pytest.mark.parametrize(
    ("step", "before", "after"),
    [(Tokenize(), (-1,), (-1, -1)), (Pad(16, 0), (-1, -1), (-1, 16))],
)
def test_forward_shapes(step, before, after) -> None:
    assert step.forward(before) == after


def test_impossible_shapes() -> None:
    with pytest.raises(ValueError) as info:
        Tokenize().forward((-1, 16))
    assert "needs a 1-D batch of texts, gets [-1, 16]" in str(info.value)


def test_descriptions() -> None:
    assert Tokenize().describe() == "tokenize(whitespace)"
    assert Lookup("vocab.txt", VOCAB, 1).describe() == "lookup(vocab.txt: 5 tokens, oov_id=1)"
