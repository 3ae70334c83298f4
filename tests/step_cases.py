"""Values and helpers shared by the tests of tfgate.plans.steps (tests/test_steps_*.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tfgate.errors import InvalidArgument
from tfgate.plans import steps
from tfgate.plans.steps import Ragged, Step

VOCAB = {"<pad>": 0, "<unk>": 1, "a": 2, "great": 3, "movie": 4}
X = np.array([[1.0, 2.0], [3.0, 4.0]])


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
    return steps.channel_values("p", list(values) if len(values) > 1 else values[0])


def run_error(step: Step, given: np.ndarray) -> str:
    """The message of the InvalidArgument ``step`` raises for ``given``, checked to name the
    tensor and the step first."""
    with pytest.raises(InvalidArgument) as info:
        steps.run("input 'v'", (step,), given)
    assert info.value.message.startswith(f"input 'v', step 1 '{step.op}': ")
    return info.value.message
