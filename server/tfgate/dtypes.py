"""TensorFlow dtypes as tfgate knows them: enum value, numpy-style name, wire layout.

TF Serving sends numeric tensors either packed in ``tensor_content`` (little-endian, the numpy
layout of ``wire``) or element by element in the ``*_val`` field named by ``val_field``. DT_HALF
and DT_BFLOAT16 elements travel in ``half_val`` as their 16-bit patterns; numpy has no bfloat16,
so tfgate holds bfloat16 as those uint16 patterns and converts at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

Kind = Literal["float", "int", "bool", "string", "unsupported"]


@dataclass(frozen=True)
class DType:
    enum: int
    name: str
    kind: Kind
    # The numpy dtype of one element in tensor_content; None where tfgate cannot carry it.
    wire: np.dtype[np.generic] | None
    val_field: str | None

    @property
    def is_bfloat16(self) -> bool:
        return self.name == "bfloat16"


def _d(enum: int, name: str, kind: Kind, wire: str | None, val_field: str | None) -> DType:
    return DType(enum, name, kind, np.dtype(wire) if wire else None, val_field)


# Enum values are TensorFlow's DataType numbers (tensorflow/core/framework/types.proto).
ALL: Final[tuple[DType, ...]] = (
    _d(1, "float32", "float", "<f4", "float_val"),
    _d(2, "float64", "float", "<f8", "double_val"),
    _d(3, "int32", "int", "<i4", "int_val"),
    _d(4, "uint8", "int", "u1", "int_val"),
    _d(5, "int16", "int", "<i2", "int_val"),
    _d(6, "int8", "int", "i1", "int_val"),
    _d(7, "string", "string", None, "string_val"),
    _d(8, "complex64", "unsupported", None, "scomplex_val"),
    _d(9, "int64", "int", "<i8", "int64_val"),
    _d(10, "bool", "bool", "?", "bool_val"),
    _d(11, "qint8", "unsupported", None, None),
    _d(12, "quint8", "unsupported", None, None),
    _d(13, "qint32", "unsupported", None, None),
    _d(14, "bfloat16", "float", "<u2", "half_val"),
    _d(15, "qint16", "unsupported", None, None),
    _d(16, "quint16", "unsupported", None, None),
    _d(17, "uint16", "int", "<u2", "int_val"),
    _d(18, "complex128", "unsupported", None, "dcomplex_val"),
    _d(19, "float16", "float", "<f2", "half_val"),
    _d(20, "resource", "unsupported", None, None),
    _d(21, "variant", "unsupported", None, None),
    _d(22, "uint32", "int", "<u4", "uint32_val"),
    _d(23, "uint64", "int", "<u8", "uint64_val"),
)

BY_ENUM: Final[dict[int, DType]] = {d.enum: d for d in ALL}
BY_NAME: Final[dict[str, DType]] = {d.name: d for d in ALL}


def from_enum(enum: int) -> DType:
    """The DType for a DataType number; reference dtypes (enum + 100) name their base."""
    found = BY_ENUM.get(enum if enum < 100 else enum - 100)
    if found is None:
        return DType(enum, f"dtype_{enum}", "unsupported", None, None)
    return found


def int_range(dtype: DType) -> tuple[int, int]:
    """The smallest and largest value an integer dtype holds."""
    assert dtype.wire is not None and dtype.kind == "int"
    info = np.iinfo(dtype.wire.type)  # type: ignore[type-var]
    return int(info.min), int(info.max)
