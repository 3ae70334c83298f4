"""Preprocessing and postprocessing steps: pure functions from arrays to arrays.

A pipeline is a list of steps. Each step takes a value of one kind and gives one of a kind::

    text ─lowercase─▶ text ─tokenize─▶ tokens ─lookup─▶ ids ─pad─▶ int [rows, length]
                                       tokens ─pad─▶ text [rows, length]
    number|int|float ─scale, normalize─▶ float ─round─▶ int ─cast─▶ int|float
    any array ─clip, reshape, expand─▶ the same kind
    a score output ─labels─▶ top-k labels (string) and their scores (float32)

One module per kind of step (``text``, ``numeric``, ``shape``, ``labels``), all built on
``base``. Importing this package imports each of them, so that REGISTRY holds every step.
"""

from tfgate.plans.steps.base import (
    ARRAYS,
    NUMERIC,
    REGISTRY,
    Arguments,
    Array,
    Kind,
    Place,
    Ragged,
    Step,
    Template,
    Value,
    describe,
    ops,
    run,
)
from tfgate.plans.steps.labels import Labels
from tfgate.plans.steps.numeric import Cast, Clip, Normalize, Round, Scale, channel_values
from tfgate.plans.steps.shape import Expand, Reshape
from tfgate.plans.steps.text import Lookup, Lowercase, Pad, Tokenize

__all__ = [
    "ARRAYS",
    "NUMERIC",
    "REGISTRY",
    "Arguments",
    "Array",
    "Cast",
    "Clip",
    "Expand",
    "Kind",
    "Labels",
    "Lookup",
    "Lowercase",
    "Normalize",
    "Pad",
    "Place",
    "Ragged",
    "Reshape",
    "Round",
    "Scale",
    "Step",
    "Template",
    "Tokenize",
    "Value",
    "channel_values",
    "describe",
    "ops",
    "run",
]
