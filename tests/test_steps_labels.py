"""tfgate.plans.steps.labels without a server: the top-k labels of a score output."""

from __future__ import annotations

import numpy as np
import pytest

from tfgate.errors import FailedPrecondition
from tfgate.plans.steps import Labels


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


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match=None) as info:
        Labels("l.txt", ("a", "b"), k=3)
    assert "k must be from 1 to the 2 labels" in str(info.value)


def test_forward_shapes() -> None:
    assert Labels("l", ("a", "b", "c"), k=2).forward((-1, 3)) == (-1, 2)


@pytest.mark.parametrize(
    ("step", "before", "needle"),
    [
        (Labels("l.txt", ("a", "b", "c")), (-1, 5), "l.txt has 3 labels, but the output has 5"),
        (Labels("l.txt", ("a",)), (), "gets a scalar"),
    ],
)
def test_impossible_shapes(step, before, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        step.forward(before)
    assert needle in str(info.value)


def test_descriptions() -> None:
    assert Labels("l.txt", ("a", "b"), k=2).describe() == "labels(l.txt: 2 labels, k=2)"
