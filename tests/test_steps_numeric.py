"""tfgate.plans.steps.numeric without a server: scale, normalize, clip, round and cast."""

from __future__ import annotations

import numpy as np
import pytest

from tests.step_cases import X, ch, run_error
from tfgate import dtypes
from tfgate.plans import steps
from tfgate.plans.steps import Cast, Clip, Normalize, Round, Scale


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
        (Cast(dtypes.BY_NAME["int32"]), np.array([1.5]), "int32 needs whole numbers"),
        (Cast(dtypes.BY_NAME["uint8"]), np.array([256]), "out of range for uint8"),
    ],
)
def test_runtime_errors_name_the_tensor_and_step(step, given, needle: str) -> None:
    assert needle in run_error(step, given)


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: Normalize(ch(0.0), ch(0.0)), "std must be positive"),
        (lambda: Normalize(ch(1, 2), ch(1, 2, 3)), "different lengths"),
        (lambda: Clip(None, None), "set min, max or both"),
        (lambda: Clip(3, 1), "above max"),
        (lambda: Cast(dtypes.BY_NAME["string"]), "numeric dtype"),
        (lambda: Cast(dtypes.BY_NAME["bfloat16"]), "other than bfloat16"),
        (lambda: steps.channel_values("mean", []), "non-empty list"),
        (lambda: steps.channel_values("mean", np.ones((1, 1))), "a number or"),
        (lambda: steps.channel_values("mean", float("nan")), "finite"),
    ],
)
def test_bad_parameters(build, needle: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        build()
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("step", "kind", "gives"),
    [
        (Scale(ch(2.0), ch(0.0)), "int", "float"),
        (Normalize(ch(0.0), ch(1.0)), "number", "float"),
        (Clip(0, 1), "int", "int"),
        (Clip(0.5, 1), "int", "float"),
        (Round(), "float", "int"),
        (Cast(dtypes.BY_NAME["float32"]), "int", "float"),
    ],
)
def test_kinds(step, kind, gives) -> None:
    assert kind in step.accepts
    assert step.kind(kind) == gives


@pytest.mark.parametrize(
    ("step", "before", "after"),
    [
        (Normalize(ch(1, 2, 3), ch(1.0)), (-1, 3), (-1, 3)),
        (Normalize(ch(1, 2, 3), ch(1.0)), None, None),
    ],
)
def test_forward_shapes(step, before, after) -> None:
    assert step.forward(before) == after


@pytest.mark.parametrize(
    ("step", "before", "needle"),
    [
        (Normalize(ch(1, 2, 3), ch(1.0)), (-1, 4), "has 3 channels, but the value's last dim"),
        (Scale(ch(1, 2), ch(0.0)), (), "the value is a scalar"),
    ],
)
def test_impossible_shapes(step, before, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        step.forward(before)
    assert needle in str(info.value)


def test_descriptions() -> None:
    assert Normalize(ch(1, 2), ch(3, 4)).describe() == "normalize(mean=[1, 2], std=[3, 4])"
    assert Scale(ch(0.5), ch(1.0)).describe() == "scale(factor=0.5, offset=1)"
