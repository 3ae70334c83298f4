"""tfgate.preprocess without a server: every step, its checks, and what it says it gives."""

from __future__ import annotations

import numpy as np
import pytest

from tfgate import dtypes, preprocess
from tfgate.errors import FailedPrecondition, InvalidArgument
from tfgate.preprocess import (
    Cast,
    Clip,
    Expand,
    Labels,
    Lookup,
    Lowercase,
    Normalize,
    Pad,
    Ragged,
    Reshape,
    Round,
    Scale,
    Tokenize,
)

VOCAB = {"<pad>": 0, "<unk>": 1, "a": 2, "great": 3, "movie": 4}


def texts(*items: str) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out


def ragged(rows: list[list]) -> Ragged:
    flat = [item for row in rows for item in row]
    values = np.empty(len(flat), dtype=object) if flat and isinstance(flat[0], str) else None
    if values is not None:
        values[:] = flat
    else:
        values = np.array(flat, dtype=np.int64)
    return Ragged(values, np.array([len(r) for r in rows], dtype=np.int64))


def rows_of(value: Ragged) -> list[list]:
    ends = np.cumsum(value.lengths)
    return [value.values[e - n : e].tolist() for e, n in zip(ends, value.lengths, strict=True)]


def ch(*values: float) -> np.ndarray:
    return preprocess.channel_values("p", list(values) if len(values) > 1 else values[0])


# -- text --------------------------------------------------------------------------------------


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
    steps = (Lowercase(), Tokenize(), Lookup("v", VOCAB, 1), Pad(5, 0))
    out = preprocess.run("input 'text'", steps, texts("A GREAT movie", "a bad a bad a bad"))
    assert isinstance(out, np.ndarray)
    assert out.tolist() == [[2, 3, 4, 0, 0], [2, 1, 2, 1, 2]]


# -- numbers -----------------------------------------------------------------------------------

X = np.array([[1.0, 2.0], [3.0, 4.0]])


@pytest.mark.parametrize(
    ("step", "given", "expected"),
    [
        (Scale(ch(2.0), ch(1.0)), X, [[3, 5], [7, 9]]),
        (Scale(ch(1.0, 10.0), ch(0.0)), X, [[1, 20], [3, 40]]),
        (Scale(ch(0.5), ch(0.0)), np.array([1, 2], np.int64), [0.5, 1.0]),
        (Normalize(ch(2.0), ch(2.0)), X, [[-0.5, 0], [0.5, 1]]),
        (Normalize(ch(1.0, 2.0), ch(1.0, 2.0)), X, [[0, 0], [2, 1]]),
        (Clip(1.5, 3.5), X, [[1.5, 2], [3, 3.5]]),
        (Clip(None, 2), X, [[1, 2], [2, 2]]),
        (Clip(0, 300), np.array([-5, 500], np.int16), [0, 300]),
        (Round(), np.array([0.4, 0.5, 1.5, -2.6]), [0, 0, 2, -3]),
        (Round(), np.array([3, 4], np.int64), [3, 4]),
        (Cast(dtypes.BY_NAME["int8"]), np.array([1.0, -3.0]), [1, -3]),
        (Reshape((-1, 4)), np.arange(8.0), [[0, 1, 2, 3], [4, 5, 6, 7]]),
        (Expand(0), np.array([1.0, 2.0]), [[1, 2]]),
        (Expand(-1), np.array([1.0, 2.0]), [[1], [2]]),
    ],
)
def test_numeric_steps(step, given: np.ndarray, expected) -> None:
    out = step.apply("x", given)
    assert out.shape == np.asarray(expected).shape
    np.testing.assert_allclose(out, expected)
    assert out.dtype == step.dtype(given.dtype)


def test_float32_stays_float32_and_ints_become_float64() -> None:
    assert Scale(ch(0.1), ch(0.0)).apply("x", X.astype(np.float32)).dtype == np.float32
    assert Normalize(ch(1.0), ch(3.0)).apply("x", np.array([1], np.int32)).dtype == np.float64
    assert Cast(dtypes.BY_NAME["float16"]).apply("x", X).dtype == np.float16


@pytest.mark.parametrize(
    ("step", "given", "needle"),
    [
        (Normalize(ch(1, 2, 3), ch(1.0)), X, "3 channels along the last axis, got shape [2, 2]"),
        (Scale(ch(1, 2), ch(0.0)), np.float64(3.0).reshape(()), "got shape []"),
        (Reshape((-1, 3)), np.arange(4.0), "cannot reshape 4 values of shape [4] to [-1, 3]"),
        (Expand(3), np.arange(4.0), "axis 3 is out of range for shape [4]"),
        (Cast(dtypes.BY_NAME["int32"]), np.array([1.5]), "int32 needs whole numbers"),
        (Cast(dtypes.BY_NAME["uint8"]), np.array([256]), "out of range for uint8"),
        (Tokenize(), texts("a", "b").reshape(1, 2), "needs a 1-D batch of texts, got [1, 2]"),
    ],
)
def test_runtime_errors_name_the_tensor_and_step(step, given, needle: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        preprocess.run("input 'v'", (step,), given)
    assert info.value.message.startswith(f"input 'v', step 1 '{step.op}': ")
    assert needle in info.value.message


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: Tokenize("(a)b"), "capturing group"),
        (lambda: Tokenize("[a"), "not a regular expression"),
        (lambda: Tokenize("a*"), "matches the empty string"),
        (lambda: Pad(0, 0), "length must be at least 1"),
        (lambda: Pad(3, 0, "middle"), "truncate must be"),  # type: ignore[arg-type]
        (lambda: Lookup("v", VOCAB, -1), "oov_id must not be negative"),
        (lambda: Normalize(ch(0.0), ch(0.0)), "std must be positive"),
        (lambda: Normalize(ch(1, 2), ch(1, 2, 3)), "different lengths"),
        (lambda: Clip(None, None), "set min, max or both"),
        (lambda: Clip(3, 1), "above max"),
        (lambda: Cast(dtypes.BY_NAME["string"]), "numeric dtype"),
        (lambda: Cast(dtypes.BY_NAME["bfloat16"]), "other than bfloat16"),
        (lambda: Reshape((-1, -1)), "at most one -1"),
        (lambda: Labels("l.txt", ("a", "b"), k=3), "k must be from 1 to the 2 labels"),
        (lambda: preprocess.channel_values("mean", []), "non-empty list"),
        (lambda: preprocess.channel_values("mean", np.ones((1, 1))), "a number or"),
        (lambda: preprocess.channel_values("mean", float("nan")), "finite"),
    ],
)
def test_bad_parameters(build, needle: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        build()
    assert needle in str(info.value)


# -- what a step says it gives, before any value -----------------------------------------------


@pytest.mark.parametrize(
    ("step", "kind", "gives"),
    [
        (Lowercase(), "text", "text"),
        (Tokenize(), "text", "tokens"),
        (Lookup("v", VOCAB, 1), "tokens", "ids"),
        (Pad(3, 0), "ids", "int"),
        (Pad(3, ""), "tokens", "text"),
        (Scale(ch(2.0), ch(0.0)), "int", "float"),
        (Normalize(ch(0.0), ch(1.0)), "number", "float"),
        (Clip(0, 1), "int", "int"),
        (Clip(0.5, 1), "int", "float"),
        (Round(), "float", "int"),
        (Cast(dtypes.BY_NAME["float32"]), "int", "float"),
        (Reshape((2,)), "float", "float"),
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
    [
        (Tokenize(), (-1,), (-1, -1)),
        (Pad(16, 0), (-1, -1), (-1, 16)),
        (Normalize(ch(1, 2, 3), ch(1.0)), (-1, 3), (-1, 3)),
        (Normalize(ch(1, 2, 3), ch(1.0)), None, None),
        (Reshape((-1, 4)), None, (-1, 4)),
        (Reshape((2, 4)), (8,), (2, 4)),
        (Expand(0), (4,), (1, 4)),
        (Expand(-1), (-1,), (-1, 1)),
        (Expand(0), None, None),
        (Labels("l", ("a", "b", "c"), k=2), (-1, 3), (-1, 2)),
    ],
)
def test_forward_shapes(step, before, after) -> None:
    assert step.forward(before) == after


@pytest.mark.parametrize(
    ("step", "before", "needle"),
    [
        (Tokenize(), (-1, 16), "needs a 1-D batch of texts, gets [-1, 16]"),
        (Normalize(ch(1, 2, 3), ch(1.0)), (-1, 4), "has 3 channels, but the value's last dim"),
        (Scale(ch(1, 2), ch(0.0)), (), "the value is a scalar"),
        (Reshape((3, 3)), (8,), "cannot reshape [8] to [3, 3]"),
        (Expand(5), (4,), "axis 5 is out of range for rank 1"),
        (Labels("l.txt", ("a", "b", "c")), (-1, 5), "l.txt has 3 labels, but the output has 5"),
        (Labels("l.txt", ("a",)), (), "gets a scalar"),
    ],
)
def test_impossible_shapes(step, before, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        step.forward(before)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("step", "after", "before"),
    [(Expand(0), (1, 4), (4,)), (Expand(-1), (-1, 1), (-1,)), (Reshape((2, 2)), (2, 2), None)],
)
def test_backward_shapes(step, after, before) -> None:
    assert step.backward(after) == before


# -- labels ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "scores", "labels", "top"),
    [
        (1, [[0.1, 0.7, 0.2]], [["b"]], [[0.7]]),
        (3, [[0.1, 0.7, 0.2]], [["b", "c", "a"]], [[0.7, 0.2, 0.1]]),
        (2, [[0.5, 0.5, 0.0], [0, 0, 1]], [["a", "b"], ["c", "a"]], [[0.5, 0.5], [1, 0]]),
        (2, np.zeros((0, 3)), np.zeros((0, 2)), np.zeros((0, 2))),
    ],
)
def test_labels(k: int, scores, labels, top) -> None:
    step = Labels("labels.txt", ("a", "b", "c"), k=k)
    names, values = step.apply("output 'p'", np.asarray(scores, dtype=np.float32))
    assert [[n.decode() for n in row] for row in names.tolist()] == np.asarray(labels).tolist()
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, top)


def test_labels_refuse_an_answer_of_another_width() -> None:
    with pytest.raises(FailedPrecondition, match=r"labels\.txt has 3 labels, but TF Serving"):
        Labels("labels.txt", ("a", "b", "c")).apply("output 'p'", np.zeros((2, 4), np.float32))


def test_descriptions() -> None:
    assert Tokenize().describe() == "tokenize(whitespace)"
    assert Lookup("vocab.txt", VOCAB, 1).describe() == "lookup(vocab.txt: 5 tokens, oov_id=1)"
    assert Normalize(ch(1, 2), ch(3, 4)).describe() == "normalize(mean=[1, 2], std=[3, 4])"
    assert Scale(ch(0.5), ch(1.0)).describe() == "scale(factor=0.5, offset=1)"
    assert Labels("l.txt", ("a", "b"), k=2).describe() == "labels(l.txt: 2 labels, k=2)"
