"""tfgate.plans.steps.base: the registry built from the step classes, and running steps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from tests.step_cases import ch
from tfgate.errors import InvalidArgument
from tfgate.plans import steps
from tfgate.plans.steps import REGISTRY, Lowercase, Reshape, Scale, Step, base


def _subclasses(cls: type[Step]) -> list[type[Step]]:
    found: list[type[Step]] = []
    sub: type[Step]
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _tfgate_steps() -> list[type[Step]]:
    return [c for c in _subclasses(Step) if c.__module__.startswith("tfgate.")]


def test_the_registry_holds_every_step_class_under_its_op() -> None:
    classes = _tfgate_steps()
    named = [c for c in classes if not c.__name__.startswith("_")]
    assert len(named) == len(REGISTRY) == 12
    assert {c.op: c for c in named} == dict(REGISTRY)
    # The others are shared bases: they name no step and are not registered.
    bases = [c for c in classes if c not in named]
    assert bases and all(not hasattr(c, "op") and c not in REGISTRY.values() for c in bases)
    assert {c.__name__ for c in named} <= set(steps.__all__)


def test_where_a_config_may_use_each_step() -> None:
    both = {"scale", "normalize", "clip", "round", "cast", "reshape", "expand"}
    assert steps.ops("input") == both | {"lowercase", "tokenize", "lookup", "pad"}
    assert steps.ops("output") == both | {"labels"}
    assert {op for op, step in REGISTRY.items() if step.reads_text} == {"lowercase", "tokenize"}


def test_a_new_step_class_registers_itself() -> None:
    @dataclass(frozen=True, eq=False)
    class Negate(Step):
        op = "test-negate"
        accepts = steps.NUMERIC
        places = frozenset({"output"})

    try:
        assert REGISTRY["test-negate"] is Negate
        assert "test-negate" in steps.ops("output") and "test-negate" not in steps.ops("input")
    finally:
        del base._REGISTRY["test-negate"]
    assert "test-negate" not in REGISTRY


def test_two_steps_cannot_share_a_name() -> None:
    twice = r"step 'lowercase' is defined twice: tfgate\.plans\.steps\.text\.Lowercase and .*Again"
    with pytest.raises(TypeError, match=twice):

        class Again(Step):
            op = "lowercase"
            accepts = frozenset({"text"})

    assert REGISTRY["lowercase"] is Lowercase


def test_run_names_the_tensor_and_the_step_by_its_place() -> None:
    pipeline = (Scale(ch(1.0), ch(0.0)), Reshape((-1, 3)))
    with pytest.raises(InvalidArgument) as info:
        steps.run("input 't'", pipeline, np.arange(4.0))
    assert info.value.message.startswith("input 't', step 2 'reshape': cannot reshape 4 values")
    out = steps.run("input 'n'", (Scale(ch(2.0), ch(1.0)),), np.array([1.0, 2.0]))
    assert isinstance(out, np.ndarray) and out.tolist() == [3.0, 5.0]


def test_describe_a_shape() -> None:
    assert steps.describe(None) == "unknown rank"
    assert steps.describe(()) == "[]"
    assert steps.describe((-1, 4)) == "[-1, 4]"
