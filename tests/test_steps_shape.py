"""tfgate.plans.steps.shape without a server: reshape and expand."""

from __future__ import annotations

import numpy as np
import pytest

from tests.step_cases import run_error
from tfgate.plans.steps import Expand, Reshape


@pytest.mark.parametrize(
    ("step", "given", "expected"),
    [
        (Reshape((-1, 4)), np.arange(8.0), [[0, 1, 2, 3], [4, 5, 6, 7]]),
        (Expand(0), np.array([1.0, 2.0]), [[1, 2]]),
        (Expand(-1), np.array([1.0, 2.0]), [[1], [2]]),
    ],
)
def test_shape_steps(step, given: np.ndarray, expected) -> None:
    out = step.apply("x", given)
    assert out.shape == np.asarray(expected).shape
    np.testing.assert_allclose(out, expected)
    assert out.dtype == step.dtype(given.dtype)


@pytest.mark.parametrize(
    ("step", "given", "needle"),
    [
        (Reshape((-1, 3)), np.arange(4.0), "cannot reshape 4 values of shape [4] to [-1, 3]"),
        (Reshape((2,)), np.arange(1.0), "cannot reshape 1 value of shape [1] to [2]"),
        (Expand(3), np.arange(4.0), "axis 3 is out of range for shape [4]"),
    ],
)
def test_runtime_errors_name_the_tensor_and_step(step, given, needle: str) -> None:
    assert needle in run_error(step, given)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match=None) as info:
        Reshape((-1, -1))
    assert "at most one -1" in str(info.value)


def test_kinds() -> None:
    step = Reshape((2,))
    assert "float" in step.accepts
    assert step.kind("float") == "float"


@pytest.mark.parametrize(
    ("step", "before", "after"),
    [
        (Reshape((-1, 4)), None, (-1, 4)),
        (Reshape((2, 4)), (8,), (2, 4)),
        (Expand(0), (4,), (1, 4)),
        (Expand(-1), (-1,), (-1, 1)),
        (Expand(0), None, None),
    ],
)
def test_forward_shapes(step, before, after) -> None:
    assert step.forward(before) == after


@pytest.mark.parametrize(
    ("step", "before", "needle"),
    [
        (Reshape((3, 3)), (8,), "cannot reshape [8] to [3, 3]"),
        (Expand(5), (4,), "axis 5 is out of range for rank 1"),
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
