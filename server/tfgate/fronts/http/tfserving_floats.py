"""Floats as TF Serving's REST API writes them, computed for whole arrays at once.

TF Serving (``WriteDecimal`` in ``tensorflow_serving/util/json_tensor.cc``) writes a float or a
double with six significant digits (``absl::StrCat``) when those read back as the same value,
and otherwise with ``max_digits10`` significant digits (9 for float32, 17 for float64); NaN and
the infinities become the tokens ``NaN``, ``Infinity`` and ``-Infinity``.

A double written that way always reads back as itself, so tfgate lets orjson write doubles in
its shortest round-trip form: the same value, sometimes other digits (``9000000.0`` where TF
Serving writes ``9e+06``). A float32 reads back as itself only when read as a float32; a client
that reads JSON numbers as doubles (most do) gets the double nearest TF Serving's 6 or 9 digits.
``float32_values`` computes that double for every element, so that orjson's shortest form of it
reads back, in any client, as exactly what TF Serving's answer would.

The vectorised rounding is exact where the power of ten it scales by is an exact double (10**0
to 10**22, which covers magnitudes from 1e-14 to 1e27) and the scaled value is not within 1e-6
of a rounding tie; the few other elements go through Python's correctly rounded ``%g``.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Final

import numpy as np
import orjson

from tfgate.dtypes import DType
from tfgate.tensors import bfloat16_to_float32

Array = np.ndarray[Any, Any]

_F32: Final = struct.Struct("<f")
_EXACT: Final = 22  # 10**22 is the largest power of ten that is an exact double
_POW10: Final = np.array([10.0**k for k in range(_EXACT + 1)])
# Nearest doubles to 10**k over float32's decimal exponents (subnormals included).
_LOW_EXP: Final = -46
_DECADES: Final = np.array([float(f"1e{k}") for k in range(_LOW_EXP, 41)])
_TOKENS: Final = (
    orjson.Fragment(b"NaN"),
    orjson.Fragment(b"Infinity"),
    orjson.Fragment(b"-Infinity"),
)


def json_floats(dtype: DType, array: Array) -> Any:
    """A float output as orjson should write it: a float64 array, or lists when not all finite.

    float16 and bfloat16 (which TF Serving's REST API cannot write at all) are written as the
    float32 of the same value.
    """
    if dtype.is_bfloat16:
        values = float32_values(bfloat16_to_float32(array))
    elif dtype.name == "float64":
        values = np.asarray(array, dtype=np.float64)
    else:
        values = float32_values(np.asarray(array).astype(np.float32))
    if values.ndim:
        values = np.ascontiguousarray(values)
    finite = np.isfinite(values)
    if finite.all():
        return values[()] if values.ndim == 0 else values
    written = values.astype(object)
    written[np.isnan(values)] = _TOKENS[0]
    written[values == np.inf] = _TOKENS[1]
    written[values == -np.inf] = _TOKENS[2]
    return written.tolist()


# Up to this many values, one correctly rounded ``%g`` each beats the ~25 numpy calls below.
_FEW: Final = 64


def float32_values(x: Array) -> Array:
    """The doubles a client reads from TF Serving's JSON for the float32 values ``x``."""
    x = np.asarray(x, dtype=np.float32)
    if x.size <= _FEW:
        few = [_one(v) if v and math.isfinite(v) else v for v in x.ravel().tolist()]
        return np.array(few, dtype=np.float64).reshape(x.shape)
    with np.errstate(invalid="ignore"):  # a signalling NaN stays a NaN, without a warning
        v = x.astype(np.float64)
    out = v.copy()  # zeros, NaN and infinities stay as they are
    todo = np.isfinite(v) & (v != 0)
    if not todo.any():
        return out
    vals = v[todo]
    mags = np.abs(vals)
    exps = np.floor(np.log10(mags)).astype(np.int64)
    # log10 can be one off next to a power of ten; settle on 10**e <= |v| < 10**(e+1).
    idx = np.clip(exps - _LOW_EXP, 0, len(_DECADES) - 2)
    exps = exps - (mags < _DECADES[idx]) + (mags >= _DECADES[idx + 1])
    six, six_exact, _ = _rounded(vals, exps, 6)
    with np.errstate(over="ignore"):
        six_reads_back = six.astype(np.float32) == vals.astype(np.float32)
    nine, nine_exact, nine_clear = _rounded(vals, exps, 9)
    chosen = np.where(six_reads_back, six, nine)
    slow = ~six_exact | (~six_reads_back & ~(nine_exact & nine_clear))
    if slow.any():
        chosen[slow] = [_one(float(item)) for item in vals[slow]]
    out[todo] = chosen
    return out


def _rounded(vals: Array, exps: Array, digits: int) -> tuple[Array, Array, Array]:
    """``vals`` to ``digits`` significant digits; where that was exact; where no tie was near."""
    shift = digits - 1 - exps  # vals * 10**shift has `digits` digits before the point
    exact = np.abs(shift) <= _EXACT
    up = shift >= 0
    power = _POW10[np.clip(np.abs(shift), 0, _EXACT)]
    scaled = np.where(up, vals * power, vals / power)
    whole = np.rint(scaled)
    rounded = np.where(up, whole / power, whole * power)
    clear = np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) > 1e-6
    return rounded, exact, clear


def _one(value: float) -> float:
    """``value`` (a float32's) with 6 significant digits if those read back as the same float32,
    else with 9."""
    six = float(f"{value:.6g}")
    if _as_float32(six) == value:
        return six
    return float(f"{value:.9g}")


def _as_float32(value: float) -> float:
    """``value`` rounded to the nearest float32 (an infinity beyond its range)."""
    try:
        return float(_F32.unpack(_F32.pack(value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)
