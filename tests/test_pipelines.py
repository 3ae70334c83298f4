"""tfgate.plans.bind and tfgate.plans.plan without a server: binding sections to signatures, and
running plans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfgate import dtypes, tensors
from tfgate.domain import Predict
from tfgate.errors import FailedPrecondition, InvalidArgument
from tfgate.plans import config as pipeline_config
from tfgate.plans.bind import BindError, bind
from tfgate.plans.plan import Plan, Plans, Prepared, check_value_count
from tfgate.signatures import ModelMetadata, Signature, TensorSpec
from tfgate.tfs.tensorflow_serving.apis import predict_pb2
from tfgate.translate import Selector
from tfgate.v1 import inference_pb2

T = inference_pb2.Tensor
D = dtypes.BY_NAME

TEXT = """
[models.m.inputs.text]
alias = "ids"
steps = [
  { op = "lowercase" },
  { op = "tokenize" },
  { op = "lookup", file = "vocab.txt", oov_id = 1 },
  { op = "pad", length = 4 },
]
"""
LABELS = """
[models.m.outputs.label]
alias = "probs"
steps = [{ op = "labels", file = "labels.txt", k = 2 }]
"""
FEATURES = """
[models.m.inputs.features]
alias = "x"
steps = [{ op = "normalize", mean = [1, 2, 3], std = [1, 1, 2] }]
"""


def meta(
    inputs: dict[str, tuple[str, tuple[int, ...] | None]],
    outputs: dict[str, tuple[str, tuple[int, ...] | None]] | None = None,
    version: int = 1,
    signature: str = "serving_default",
) -> ModelMetadata:
    def specs(table):
        return {k: TensorSpec(D[d], s) for k, (d, s) in table.items()}

    outputs = outputs if outputs is not None else {"probs": ("float32", (-1, 3))}
    return ModelMetadata(
        "m", version, {signature: Signature("predict", specs(inputs), specs(outputs))}
    )


TEXT_META = meta({"ids": ("int64", (-1, 4))})


def prepare(plan: Plan, request: inference_pb2.PredictRequest, limit: int) -> Prepared:
    given = Predict(
        request.model,
        inputs=request.inputs,
        output_filter=request.output_filter,
        size=request.ByteSize(),
    )
    check_value_count(given, limit)  # as tfgate.inference does, before the plan
    return plan.prepare(Selector("m"), given, limit)


def inputs_of(prepared: Prepared) -> dict[str, tuple[dtypes.DType, np.ndarray]]:
    """The arrays a prepared request sends TF Serving, by signature input."""
    sent = prepared.request.parse()
    return {k: tensors.from_proto(k, sent.inputs[k]) for k in sent.inputs}


def filter_of(prepared: Prepared) -> list[str]:
    return list(prepared.request.parse().output_filter)


def made(plan: Plan, prepared: Prepared, alias: str, array: np.ndarray) -> list:
    """The domain outputs (name, dtype, array) the plan makes of one float32 answer."""
    answer = predict_pb2.PredictResponse()
    answer.outputs[alias].CopyFrom(tensors.to_proto(array, D["float32"]))
    return [(name, *out.array(name)) for name, out in plan.outputs(answer, prepared.wanted)]


@pytest.fixture
def load(tmp_path: Path):
    (tmp_path / "vocab.txt").write_text("<pad>\n<unk>\ngood\nbad\nplot\n")
    (tmp_path / "labels.txt").write_text("neg\nneu\npos\n")

    def load(text: str):
        path = tmp_path / "tfgate.toml"
        path.write_text(text)
        return pipeline_config.load(str(path))["m"]

    return load


def request(**inputs: inference_pb2.Tensor) -> inference_pb2.PredictRequest:
    return inference_pb2.PredictRequest(model="m", inputs=inputs)


@pytest.mark.parametrize(
    ("text", "metadata", "needle"),
    [
        (
            "[models.m]\nsignature = 'other'\n",
            TEXT_META,
            "version 1: no signature 'other' (signatures: serving_default)",
        ),
        (
            TEXT,
            meta({"token_ids": ("int64", (-1, 4))}),
            "input 'text': 'ids' is not an input of signature 'serving_default' "
            "(inputs: token_ids)",
        ),
        (
            TEXT,
            meta({"ids": ("float32", (-1, 4))}),
            "",  # ids may feed a float input: no problem (checked below as a success)
        ),
        (
            TEXT,
            meta({"ids": ("string", (-1, 4))}),
            "input 'text': the steps give int values, but 'ids' is string",
        ),
        (
            TEXT,
            meta({"ids": ("bool", (-1, 4))}),
            "the steps give int values, but 'ids' is bool",
        ),
        (
            TEXT,
            meta({"ids": ("complex64", (-1, 4))}),
            "'ids' is complex64, which tfgate cannot feed",
        ),
        (
            TEXT.replace("oov_id = 1", "oov_id = 300"),
            meta({"ids": ("int8", (-1, 4))}),
            "input 'text', step 3 'lookup': ids up to 300 (vocab.txt) do not fit 'ids' "
            "(int8, up to 127)",
        ),
        (
            TEXT.replace("length = 4", "length = 4, value = -1"),
            meta({"ids": ("uint8", (-1, 4))}),
            "step 4 'pad': value -1 does not fit uint8",
        ),
        (
            TEXT,
            meta({"ids": ("int64", (-1, 16))}),
            "input 'text': the steps give shape [-1, 4], but 'ids' is [-1, 16]",
        ),
        (
            TEXT,
            meta({"ids": ("int64", (-1,))}),
            "the steps give shape [-1, 4], but 'ids' is [-1]",
        ),
        (
            FEATURES,
            meta({"x": ("int32", (-1, 3))}),
            "input 'features': the steps give float values, but 'x' is int32 (add a 'round' "
            "or 'cast' step)",
        ),
        (
            FEATURES,
            meta({"x": ("float32", (-1, 4))}),
            "input 'features', step 1 'normalize': has 3 channels, but the value's last "
            "dimension is 4",
        ),
        (
            FEATURES.replace("steps = [", "steps = [{ op = 'reshape', shape = [-1, 4] }, "),
            meta({"x": ("float32", None)}),
            "step 2 'normalize': has 3 channels, but the value's last dimension is 4",
        ),
        (
            FEATURES.replace("steps = [", "steps = [{ op = 'reshape', shape = [-1, 3] }, "),
            meta({"x": ("float32", (-1, 3, 1))}),
            "the steps give shape [-1, 3], but 'x' is [-1, 3, 1]",
        ),
        (
            FEATURES + "default = [1, 2]\n",
            meta({"x": ("float32", (-1, 3))}),
            "input 'features': the default does not fit: input 'features' (default), step 1 "
            "'normalize': has 3 channels along the last axis, got shape [1, 2]",
        ),
        (
            "[models.m.inputs.t]\nalias = 'x'\ndefault = 'cold'\n",
            meta({"x": ("float32", (-1,))}),
            "the default does not fit: input 't', fed to 'x': expects numbers for float32",
        ),
        (
            "[models.m.inputs.t]\nalias = 'x'\ndefault = 1000\n",
            meta({"x": ("int8", (-1,))}),
            "out of range for int8",
        ),
        (
            "[models.m.inputs.x]\nalias = 'y'\n",
            meta({"x": ("float32", (-1,)), "y": ("float32", (-1,))}),
            "input 'x': signature 'serving_default' has an input of that name too",
        ),
        (
            LABELS,
            meta({"ids": ("int64", (-1, 4))}, {"logits": ("float32", (-1, 3))}),
            "output 'label': 'probs' is not an output of signature 'serving_default' "
            "(outputs: logits)",
        ),
        (
            LABELS,
            meta({"ids": ("int64", (-1, 4))}, {"probs": ("float32", (-1, 5))}),
            "output 'label', step 1 'labels': labels.txt has 3 labels, but the output has 5 "
            "classes (shape [-1, 5])",
        ),
        (
            LABELS,
            meta({"ids": ("int64", (-1, 4))}, {"probs": ("float32", ())}),
            "step 1 'labels': needs scores along a last axis, gets a scalar",
        ),
        (
            LABELS,
            meta({"ids": ("int64", (-1, 4))}, {"probs": ("string", (-1, 3))}),
            "output 'label': 'probs' is string; only numbers take steps",
        ),
        (
            LABELS,
            meta(
                {"ids": ("int64", (-1, 4))},
                {"probs": ("float32", (-1, 3)), "label": ("float32", (-1,))},
            ),
            "output 'label': signature 'serving_default' has an output of that name too",
        ),
        (
            "[models.m.outputs.y]\nalias = 'probs'\nsteps = [{ op = 'normalize', "
            "mean = [0, 0], std = 1 }]\n",
            meta({"ids": ("int64", (-1, 4))}),
            "output 'y', step 1 'normalize': has 2 channels, but the value's last dimension is 3",
        ),
    ],
)
def test_bind_names_file_model_version_tensor_and_problem(
    load, tmp_path: Path, text: str, metadata: ModelMetadata, needle: str
) -> None:
    section = load(text)
    if not needle:
        bind(section, metadata)
        return
    with pytest.raises(BindError) as info:
        bind(section, metadata)
    message = str(info.value)
    assert message.startswith(f"config file {tmp_path / 'tfgate.toml'}: model 'm' version 1")
    assert needle in message


def test_a_failed_version_answers_failed_precondition_and_another_version_binds(load) -> None:
    pipelines = Plans({"m": load(TEXT)})
    bad = meta({"ids": ("int64", (-1, 16))}, version=1)
    for _ in range(2):  # the same message each time; the binding is not retried
        with pytest.raises(FailedPrecondition, match=r"version 1 input 'text': the steps give"):
            pipelines.plan(bad, "")
    good = meta({"ids": ("int64", (-1, 4))}, version=2)
    plan = pipelines.plan(good, "serving_default")
    assert plan is not None and plan.version == 2
    # Other signatures, and other models, take the identity plan.
    with pytest.raises(FailedPrecondition, match='Serving signature key "other" not found'):
        pipelines.plan(good, "other")
    plain = Plans().plan(good, "")
    assert plain.view is None and list(plain.feeds) == ["ids"] and plain.emits == {}


def test_text_plan(load) -> None:
    plan = bind(load(TEXT + LABELS), TEXT_META)
    prepared = prepare(plan, request(text=T(strings=["Good plot", "BAD bad bad bad bad", ""])), 100)
    dtype, ids = inputs_of(prepared)["ids"]
    assert dtype.name == "int64"
    assert ids.tolist() == [[2, 4, 0, 0], [3, 3, 3, 3], [0, 0, 0, 0]]
    assert filter_of(prepared) == []
    outputs = made(plan, prepared, "probs", np.array([[0.2, 0.3, 0.5]], np.float32))
    assert [(name, d.name) for name, d, _ in outputs] == [
        ("label", "string"),
        ("scores", "float32"),
    ]
    assert outputs[0][2].tolist() == [[b"pos", b"neu"]]
    np.testing.assert_allclose(outputs[1][2], [[0.5, 0.3]])


def test_output_filter_names_domain_outputs(load) -> None:
    plan = bind(
        load(LABELS + "[models.m.outputs.probs]\n"),
        meta({"ids": ("int64", (-1, 4))}, {"probs": ("float32", (-1, 3)), "z": ("int8", ())}),
    )
    base = request(ids=T(ints=[1, 2, 3, 4], shape=[1, 4]))
    base.output_filter.append("scores")
    prepared = prepare(plan, base, 100)
    assert filter_of(prepared) == ["probs"]
    outputs = made(plan, prepared, "probs", np.array([[0.2, 0.3, 0.5]], np.float32))
    assert [name for name, _, _ in outputs] == ["scores"]
    base.output_filter[:] = ["probs", "z"]
    prepared = prepare(plan, base, 100)
    assert filter_of(prepared) == ["probs", "z"]
    outputs = made(plan, prepared, "probs", np.array([[0.2, 0.3, 0.5]], np.float32))
    assert [name for name, _, _ in outputs] == ["probs"]
    for wrong, needle in (
        (["label", "nope"], "output_filter: 'nope' is not an output of signature"),
        (["label", "label"], "output_filter: 'label' is listed twice"),
    ):
        base.output_filter[:] = wrong
        with pytest.raises(InvalidArgument, match=needle):
            prepare(plan, base, 100)


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ({"ids": T(ints=[1, 2, 3, 4])}, "input 'ids': not an input of signature 'serving_default'"),
        ({}, "inputs: missing 'text' (string [-1]), required by signature"),
        ({"text": T(floats=[1.0])}, "input 'text': expects text (strings), got floats"),
        ({"text": T(bytes_values=[b"\xff"])}, "input 'text': a bytes_values item is not UTF-8"),
        (
            {"text": T(strings=["a", "b"], shape=[1, 2])},
            "input 'text': expects a 1-D batch of texts; shape [1, 2]",
        ),
        ({"text": T(strings=["a"], bools=[True])}, "set exactly one value list"),
    ],
)
def test_text_plan_refusals(load, inputs, needle: str) -> None:
    plan = bind(load(TEXT), TEXT_META)
    with pytest.raises(InvalidArgument) as info:
        prepare(plan, request(**inputs), 100)
    assert needle in info.value.message


def test_too_many_values_after_preprocessing(load) -> None:
    plan = bind(load(TEXT), TEXT_META)
    with pytest.raises(InvalidArgument, match="preprocessing makes 12 values in all"):
        prepare(plan, request(text=T(strings=["a", "b", "c"])), 10)
    with pytest.raises(InvalidArgument, match="inputs: 3 values in all"):
        prepare(plan, request(text=T(strings=["a", "b", "c"])), 2)


def test_numeric_plan_and_defaults(load) -> None:
    text = (
        FEATURES
        + """
[models.m.inputs.t]
alias = "temperature"
default = 0.5
[models.m.inputs.mode]
default = "fast"
"""
    )
    plan = bind(
        load(text),
        meta(
            {
                "x": ("float32", (-1, 3)),
                "temperature": ("float32", (-1,)),
                "mode": ("string", ()),
            }
        ),
    )
    prepared = prepare(plan, request(features=T(ints=[1, 2, 3, 3, 4, 7], shape=[2, 3])), 100)
    sent = inputs_of(prepared)
    x_dtype, x = sent["x"]
    assert x_dtype.name == "float32" and x.dtype == np.float32
    np.testing.assert_allclose(x, [[0, 0, 0], [2, 2, 2]])
    assert sent["temperature"][1].tolist() == [0.5, 0.5]  # one per example
    assert sent["mode"][1].tolist() == b"fast"  # not batched: as given
    given = inputs_of(
        prepare(plan, request(features=T(floats=[1, 2, 3], shape=[1, 3]), t=T(floats=[2.0])), 100)
    )
    assert given["temperature"][1].tolist() == [2.0]
    with pytest.raises(InvalidArgument, match="input 'features', step 1 'normalize': has 3"):
        prepare(plan, request(features=T(floats=[1, 2])), 100)
    with pytest.raises(InvalidArgument, match="input 'features': expects float64"):
        prepare(plan, request(features=T(strings=["1"])), 100)
    with pytest.raises(InvalidArgument, match="input 'features', fed to 'x': shape \\[3\\] does"):
        prepare(plan, request(features=T(floats=[1, 2, 3])), 100)


def test_domain_view(load) -> None:
    plan = bind(
        load(TEXT + LABELS + "[models.m.inputs.k]\ndefault = 3\n"),
        meta({"ids": ("int64", (-1, 4)), "k": ("int32", ())}),
    )
    view = plan.view
    assert view is not None and view.method == "predict"
    text = view.inputs["text"]
    assert (text.dtype, list(text.shape), text.alias, text.optional) == (
        "string",
        [-1],
        "ids",
        False,
    )
    assert list(text.steps) == [
        "lowercase",
        "tokenize(whitespace)",
        "lookup(vocab.txt: 5 tokens, oov_id=1)",
        "pad(length=4, value=0, truncate=end)",
    ]
    assert view.inputs["k"].optional and view.inputs["k"].dtype == "int32"
    label, scores = view.outputs["label"], view.outputs["scores"]
    assert (label.dtype, list(label.shape), label.alias) == ("string", [-1, 2], "probs")
    assert (scores.dtype, list(scores.shape)) == ("float32", [-1, 2])
    assert list(label.steps) == ["labels(labels.txt: 3 labels, k=2)"]
    assert "probs" not in view.outputs

    numeric_view = bind(
        load(FEATURES.replace("steps = [", "steps = [{ op = 'expand', axis = 0 }, ")),
        meta({"x": ("float32", (-1, 3))}),
    ).view
    assert numeric_view is not None
    numeric = numeric_view.inputs["features"]
    assert (numeric.dtype, list(numeric.shape)) == ("float64", [3])
