"""Floats read back as the values TF Serving's WriteDecimal writes (6 digits, else 9 or 17)."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from tfgate import dtypes
from tfgate.fronts.http.tfserving_floats import float32_values, json_floats


def _tf_serving(value: float) -> float:
    """What a client reads from TF Serving's text for the float32 ``value`` (json_tensor.cc)."""
    if value == 0 or not math.isfinite(value):
        return value
    six = f"{value:.6g}"  # absl::StrCat(float): six significant digits
    if np.float32(float(six)) == np.float32(value):
        return float(six)
    return float(f"{value:.9g}")  # max_digits10 of float


def test_tf_serving_six_digit_cases() -> None:
    values = np.array([9000000, 999999, 0.5, 0.0003, 0.00003, 555557.5], dtype=np.float32)
    assert float32_values(values).tolist() == [9e06, 999999.0, 0.5, 0.0003, 3e-05, 555557.5]


def test_values_that_need_nine_digits() -> None:
    values = np.array([1 + 2**-23, 1.001953125, 0.1 + 2**-27], dtype=np.float32)
    assert float32_values(values).tolist() == [1.00000012, 1.00195312, 0.100000009]


@pytest.mark.parametrize("scale", [1e-30, 1e-12, 1e-3, 1.0, 1e3, 1e12, 1e30])
def test_matches_the_element_wise_rule(scale: float) -> None:
    rng = np.random.default_rng(int(math.log10(scale)) + 40)
    values = (rng.standard_normal(20_000) * scale).astype(np.float32)
    values[::5] = np.round(values[::5] / scale, 3) * scale  # short decimals, as models output
    got = float32_values(values)
    assert got.tolist() == [_tf_serving(float(v)) for v in values]
    assert (got.astype(np.float32) == values).all()


def test_matches_the_rule_over_every_exponent() -> None:
    bits = np.random.default_rng(3).integers(0, 2**31, size=50_000).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    edges = np.array(
        [np.finfo(np.float32).max, np.finfo(np.float32).smallest_subnormal, 1e-14, 1e27, 1e28],
        dtype=np.float32,
    )
    values = np.concatenate([values, -values, edges])
    assert float32_values(values).tolist() == [_tf_serving(float(v)) for v in values]


def test_zeros_and_non_finite_values_stay() -> None:
    got = float32_values(np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype=np.float32))
    assert got[:4].tolist() == [0.0, -0.0, math.inf, -math.inf] and math.isnan(got[4])
    assert math.copysign(1, got[1]) == -1


def test_json_floats_writes_tokens_and_keeps_doubles() -> None:
    f64 = dtypes.BY_NAME["float64"]
    exact = np.array([0.1, 1 / 3, 5e-324])
    written = orjson.dumps(json_floats(f64, exact), option=orjson.OPT_SERIALIZE_NUMPY)
    assert orjson.loads(written) == exact.tolist()
    tokens = json_floats(f64, np.array([[math.nan, 1.0], [math.inf, -math.inf]]))
    assert orjson.dumps(tokens) == b"[[NaN,1.0],[Infinity,-Infinity]]"
    assert json_floats(dtypes.BY_NAME["float32"], np.array(0.1, dtype=np.float32)) == 0.1


def test_a_few_values_read_as_many_do() -> None:
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, size=4000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    many = float32_values(values)  # the vectorised path
    few = np.concatenate([float32_values(values[i : i + 40]) for i in range(0, 4000, 40)])
    np.testing.assert_array_equal(np.isnan(few), np.isnan(many))
    finite = ~np.isnan(many)
    np.testing.assert_array_equal(few[finite], many[finite])
    assert float32_values(np.array(0.1, dtype=np.float32)).shape == ()
