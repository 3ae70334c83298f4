"""TF Serving's own test expectations, as data: (calls, expected) per case.

Each ``Case`` names the TF Serving test it comes from and holds one or more ``Call``s (an RPC,
its request in text format, and what must come back). The requests are TF Serving's messages
(``tensorflow.serving.*``), parsed with tfgate's stubs; tests/test_conformance.py sends them to
the local model server and to tfgate's forwarded TF Serving API in front of it. Another front
(tfgate.v1) can translate the same cases.

Expectations:

- ``Answer(text)``: the whole response equals this message, as TF Serving's C++ tests compare
  them (``EqualsProto``), field presence included (a scalar's empty ``tensor_shape {}``).
- ``Fields({path: value})``: only these fields, as TF Serving's Python tests check them. A path
  is dotted; ``name[key]`` indexes a map or a repeated field, ``len(name)`` counts.
- ``Error(code, start)``: the RPC fails with this code; its message starts with ``start`` (or
  contains ``part``), where TF Serving's tests check a message at all.
- ``Check(function)``: a function of the response that asserts what a test checks by hand.

The models are those scripts/export_models.py --conformance builds, under the names of its
CONFORMANCE_MODELS; every version is 123 except half_plus_two_2_versions' 124.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from tfgate.tfs.tensorflow_serving.apis import get_model_metadata_pb2

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED

HP2 = "half_plus_two"  # TF1 graph, x of shape (None, 1)
HP2_TF2 = "half_plus_two_tf2"  # tf.saved_model.save, x of shape [1]
TWO_VERSIONS = "half_plus_two_2_versions"
CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"
PREDICT = "tensorflow/serving/predict"


@dataclass(frozen=True)
class Answer:
    text: str


@dataclass(frozen=True)
class Fields:
    values: dict[str, Any]


@dataclass(frozen=True)
class Error:
    code: grpc.StatusCode
    start: str = ""
    part: str = ""


@dataclass(frozen=True)
class Check:
    function: Callable[[Any], None]


Expect = Answer | Fields | Error | Check


@dataclass(frozen=True)
class Call:
    rpc: str  # PredictionService or ModelService method
    request: str  # text format of the request message
    expect: Expect


@dataclass(frozen=True)
class Case:
    id: str
    source: str  # file and test in tensorflow/serving
    calls: tuple[Call, ...] = field(default_factory=tuple)


def spec(model: str = HP2, signature: str = "", version: int | None = 123) -> str:
    text = f'name: "{model}"'
    if version is not None:
        text += f" version {{ value: {version} }}"
    if signature:
        text += f' signature_name: "{signature}"'
    return f"model_spec {{ {text} }}"


def floats(key: str, value: float, shape: tuple[int, ...] | None = None) -> str:
    """An inputs entry holding one float; shape None leaves tensor_shape out (a scalar)."""
    dims = "" if shape is None else " ".join(f"dim {{ size: {d} }}" for d in shape)
    shape_text = "" if shape is None else f"tensor_shape {{ {dims} }}"
    return f'inputs {{ key: "{key}" value {{ dtype: DT_FLOAT {shape_text} float_val: {value} }} }}'


def scalar_output(key: str, value: float) -> str:
    value_text = f"dtype: DT_FLOAT tensor_shape {{}} float_val: {value}"
    return f'outputs {{ key: "{key}" value {{ {value_text} }} }}'


def example(**features: float) -> str:
    entries = " ".join(
        f'feature {{ key: "{k}" value {{ float_list {{ value: {v} }} }} }}'
        for k, v in features.items()
    )
    return f"input {{ example_list {{ examples {{ features {{ {entries} }} }} }} }}"


# ClassificationSuccess / RegressionSuccess: x = 80 and two features the model ignores.
EXAMPLE_80 = (
    "input { example_list { examples { features {"
    ' feature { key: "x" value { float_list { value: 80 } } }'
    ' feature { key: "locale" value { bytes_list { value: "pt_BR" } } }'
    ' feature { key: "age" value { float_list { value: 19 } } }'
    " } } } }"
)


def task(signature: str, method: str, model: str = HP2) -> str:
    return (
        f'tasks {{ model_spec {{ name: "{model}" signature_name: "{signature}" }} '
        f'method_name: "{method}" }}'
    )


def verify_predict(
    model: str, expected: float, *, signature: str = "serving_default", filter_y: bool = True
) -> Call:
    """tensorflow_model_server_test_base.py VerifyPredictRequest: x = [2.0] of shape [1]."""
    request = spec(model, signature, version=None) + " " + floats("x", 2.0, (1,))
    if filter_y:
        request += ' output_filter: "y"'
    return Call(
        "Predict",
        request,
        Fields(
            {
                "outputs[y].dtype": 1,  # DT_FLOAT
                "len(outputs[y].float_val)": 1,
                "outputs[y].float_val[0]": expected,
                "model_spec.name": model,
                "model_spec.signature_name": signature,
                "model_spec.version.value": 123,
            }
        ),
    )


def _signature_defs(response: Any) -> Any:
    signature_def_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_def_map)
    return signature_def_map.signature_def


def metadata_of_half_plus_two(response: Any) -> None:
    """testGetModelMetadata and ReturnsSignaturesForValidModel."""
    assert (response.model_spec.name, response.model_spec.version.value) == (HP2, 123)
    assert response.model_spec.signature_name == ""
    assert list(response.metadata) == ["signature_def"]
    signatures = _signature_defs(response)
    assert sorted(signatures) == sorted(
        [
            "serving_default",
            "regress_x_to_y",
            "regress_x_to_y2",
            "regress_x2_to_y3",
            "classify_x_to_y",
            "classify_x2_to_y3",
        ]
    )
    regress = signatures["regress_x_to_y"]
    assert (regress.method_name, list(regress.inputs), list(regress.outputs)) == (
        REGRESS,
        ["inputs"],
        ["outputs"],
    )
    serving = signatures["serving_default"]
    assert [d.size for d in serving.inputs["x"].tensor_shape.dim] == [-1, 1]


def _multi_inference_cases(model: str, tf: str) -> list[Case]:
    source = f"multi_inference_test.cc ({tf} model)"
    x2 = example(x=2)
    version = "version { value: 123 }"

    def result(signature: str, body: str) -> str:
        return (
            f'results {{ model_spec {{ name: "{model}" signature_name: "{signature}" {version} }}'
            f" {body} }}"
        )

    regression_3 = result("regress_x_to_y", "regression_result { regressions { value: 3 } }")
    return [
        Case(
            f"multi-missing-input-{tf}",
            f"{source} MissingInputTest",
            (
                Call(
                    "MultiInference",
                    task("regress_x_to_y", REGRESS, model),
                    Error(INVALID, part="Input is empty"),
                ),
            ),
        ),
        Case(
            f"multi-undefined-signature-{tf}",
            f"{source} UndefinedSignatureTest",
            (
                Call(
                    "MultiInference",
                    x2 + task("ThisSignatureDoesNotExist", REGRESS, model),
                    Error(INVALID, part="signature not found"),
                ),
            ),
        ),
        Case(
            f"multi-inconsistent-model-specs-{tf}",
            f"{source} InconsistentModelSpecsInRequestTest",
            (
                Call(
                    "MultiInference",
                    x2
                    + task("regress_x_to_y", REGRESS, model)
                    + task("regress_x_to_y", REGRESS, "ModelDoesNotExist"),
                    Error(INVALID, part="must access the same model name"),
                ),
            ),
        ),
        Case(
            f"multi-duplicate-signatures-{tf}",
            f"{source} EvaluateDuplicateSignaturesTest",
            (
                Call(
                    "MultiInference",
                    x2 + task("regress_x_to_y", REGRESS, model) * 2,
                    Error(INVALID, part="Duplicate evaluation of signature: regress_x_to_y"),
                ),
            ),
        ),
        Case(
            f"multi-unsupported-signature-type-{tf}",
            f"{source} UsupportedSignatureTypeTest",
            (
                Call(
                    "MultiInference",
                    x2 + task("serving_default", PREDICT, model),
                    Error(UNIMPLEMENTED, part="Unsupported signature"),
                ),
            ),
        ),
        Case(
            f"multi-valid-single-signature-{tf}",
            f"{source} ValidSingleSignatureTest",
            (
                Call(
                    "MultiInference",
                    x2 + task("regress_x_to_y", REGRESS, model),
                    Answer(regression_3),
                ),
            ),
        ),
        Case(
            f"multi-two-regressions-{tf}",
            f"{source} MultipleValidRegressSignaturesTest",
            (
                Call(
                    "MultiInference",
                    x2
                    + task("regress_x_to_y", REGRESS, model)
                    + task("regress_x_to_y2", REGRESS, model),
                    Answer(
                        regression_3
                        + result(
                            "regress_x_to_y2", "regression_result { regressions { value: 4 } }"
                        )
                    ),
                ),
            ),
        ),
        Case(
            f"multi-regress-and-classify-{tf}",
            f"{source} RegressAndClassifySignaturesTest; tensorflow_model_server_test.py "
            f"testMultiInference{'Tf2' if tf == 'TF2' else ''}",
            (
                Call(
                    "MultiInference",
                    x2
                    + task("regress_x_to_y", REGRESS, model)
                    + task("classify_x_to_y", CLASSIFY, model),
                    Answer(
                        regression_3
                        + result(
                            "classify_x_to_y",
                            "classification_result { classifications { classes { score: 3 } } }",
                        )
                    ),
                ),
            ),
        ),
    ]


def _counter_calls() -> tuple[Call, ...]:
    """PredictionWithCustomizedSignatures, after a reset: both targets share one counter."""
    steps = [
        ("reset_counter", "", 0.0),
        ("get_counter", "", 0.0),
        ("incr_counter", "", 1.0),
        ("reset_counter", "", 0.0),
        ("incr_counter", ' output_filter: "output"', 1.0),
        ("incr_counter_by", " " + floats("delta", 3.0), 4.0),
    ]
    return tuple(
        Call(
            "Predict",
            spec("counter", signature) + extra,
            Answer(spec("counter", signature) + " " + scalar_output("output", value)),
        )
        for signature, extra, value in steps
    )


STRING_KEY = 'dtype: DT_STRING tensor_shape { dim { size: 1 } } string_val: "any_key"'

CASES: list[Case] = [
    # --- tensorflow_model_server_test.py ------------------------------------------------------
    Case(
        "status",
        "tensorflow_model_server_test.py testGetModelStatus (state from testGetStatusREST)",
        (
            Call(
                "GetModelStatus",
                f'model_spec {{ name: "{HP2}" }}',
                Answer("model_version_status { version: 123 state: AVAILABLE status {} }"),
            ),
        ),
    ),
    Case(
        "metadata",
        "tensorflow_model_server_test.py testGetModelMetadata",
        (
            Call(
                "GetModelMetadata",
                spec() + ' metadata_field: "signature_def"',
                Check(metadata_of_half_plus_two),
            ),
        ),
    ),
    *(
        Case(
            f"{rpc.lower()}-{tf}",
            f"tensorflow_model_server_test.py test{rpc}{'Tf2' if tf == 'TF2' else ''}",
            (
                Call(
                    rpc,
                    spec(model, f"{rpc.lower()}_x_to_y", version=None) + " " + example(x=2),
                    Answer(f"result {{ {body} }} " + spec(model, f"{rpc.lower()}_x_to_y")),
                ),
            ),
        )
        for model, tf in ((HP2, "TF1"), (HP2_TF2, "TF2"))
        for rpc, body in (
            ("Classify", "classifications { classes { score: 3 } }"),
            ("Regress", "regressions { value: 3 }"),
        )
    ),
    Case(
        "predict-x-of-shape-1",
        "tensorflow_model_server_test.py testPredictSavedModel (x [1] into (None, 1))",
        (verify_predict(HP2, 3.0), verify_predict(HP2, 3.0, filter_y=False)),
    ),
    Case(
        "predict-tf2",
        "tensorflow_model_server_test_base.py VerifyPredictRequest on the TF2 half_plus_two",
        (verify_predict(HP2_TF2, 3.0),),
    ),
    Case(
        "good-model-config",
        "tensorflow_model_server_test.py testGoodModelConfig",
        (
            verify_predict(HP2, 3.0),
            verify_predict(HP2, 3.0, filter_y=False),
            verify_predict("half_plus_three", 4.0),
            verify_predict("half_plus_three", 4.0, filter_y=False),
        ),
    ),
    Case(
        "tf-saved-model-save",
        "tensorflow_model_server_test.py test_tf_saved_model_save",
        (verify_predict("tf_saved_model_save", 12.0, filter_y=False),),
    ),
    Case(
        "tf-saved-model-save-multiple-signatures",
        "tensorflow_model_server_test.py test_tf_saved_model_save_multiple_signatures",
        (
            verify_predict(
                "tf_saved_model_save_multiple_signatures", 2.0, signature="custom_signature_key"
            ),
            verify_predict("tf_saved_model_save_multiple_signatures", 1.0),
        ),
    ),
    # --- predict_impl_test.cc -----------------------------------------------------------------
    Case(
        "predict-missing-or-empty-model-spec",
        "predict_impl_test.cc MissingOrEmptyModelSpec",
        (
            Call("Predict", "", Error(INVALID)),
            Call("Predict", "model_spec {}", Error(INVALID)),
            Call("Predict", 'model_spec { name: "test" }', Error(NOT_FOUND)),
        ),
    ),
    Case(
        "predict-empty-input-list",
        "predict_impl_test.cc EmptyInputList",
        (Call("Predict", spec(), Error(INVALID)),),
    ),
    Case(
        "predict-inputs-dont-match",
        "predict_impl_test.cc InputTensorsDontMatchModelSpecInputs",
        (
            Call(
                "Predict",
                spec() + f' inputs {{ key: "key" value {{ {STRING_KEY} }} }}',
                Error(INVALID),
            ),
        ),
    ),
    Case(
        "predict-output-filters",
        "predict_impl_test.cc OutputFiltersDontMatchModelSpecOutputs",
        (
            Call(
                "Predict",
                spec() + floats("x", 2.0) + ' output_filter: "output_filter"',
                Error(INVALID),
            ),
            Call(
                "Predict",
                spec() + floats("x", 2.0) + ' output_filter: "y"',
                Answer(spec(signature="serving_default") + " " + scalar_output("y", 3.0)),
            ),
            Call(
                "Predict",
                spec() + floats("x", 2.0) + ' output_filter: "y" output_filter: "y"',
                Error(INVALID),
            ),
        ),
    ),
    Case(
        "predict-wrong-type",
        "predict_impl_test.cc InputTensorsHaveWrongType",
        (
            Call(
                "Predict",
                spec() + f' inputs {{ key: "x" value {{ {STRING_KEY} }} }} output_filter: "y"',
                Error(INVALID),
            ),
        ),
    ),
    Case(
        "predict-scalar-success",
        "predict_impl_test.cc PredictionSuccess (a scalar x into (None, 1))",
        (
            Call(
                "Predict",
                spec() + floats("x", 2.0),
                Answer(spec(signature="serving_default") + " " + scalar_output("y", 3.0)),
            ),
        ),
    ),
    Case(
        "predict-named-regression-signature",
        "predict_impl_test.cc PredictionWithNamedRegressionSignature",
        (
            Call(
                "Predict",
                spec(signature="regress_x2_to_y3") + floats("inputs", 2.0),
                Answer(spec(signature="regress_x2_to_y3") + " " + scalar_output("outputs", 4.0)),
            ),
        ),
    ),
    Case(
        "predict-named-classification-signature",
        "predict_impl_test.cc PredictionWithNamedClassificationSignature",
        (
            Call(
                "Predict",
                spec(signature="classify_x2_to_y3") + floats("inputs", 2.0),
                Answer(spec(signature="classify_x2_to_y3") + " " + scalar_output("scores", 4.0)),
            ),
        ),
    ),
    Case(
        "predict-counter",
        "predict_impl_test.cc PredictionWithCustomizedSignatures (scalar outputs)",
        _counter_calls(),
    ),
    # --- classification_service_test.cc, regression_service_test.cc ---------------------------
    *(
        Case(
            f"{rpc.lower()}-invalid-model-spec",
            f"{rpc.lower().replace('classify', 'classification').replace('regress', 'regression')}"
            "_service_test.cc InvalidModelSpec",
            (
                Call(rpc, "", Error(INVALID)),
                Call(rpc, "model_spec {}", Error(INVALID)),
                Call(rpc, 'model_spec { name: "foo" }', Error(NOT_FOUND)),
            ),
        )
        for rpc in ("Classify", "Regress")
    ),
    *(
        Case(
            f"{rpc.lower()}-invalid-signature",
            f"{rpc.lower().replace('classify', 'classification').replace('regress', 'regression')}"
            "_service_test.cc InvalidSignature",
            (
                Call(
                    rpc,
                    spec(signature="invalid_signature_name", version=None),
                    Error(INVALID),
                ),
            ),
        )
        for rpc in ("Classify", "Regress")
    ),
    Case(
        "classify-success",
        "classification_service_test.cc ClassificationSuccess",
        (
            Call(
                "Classify",
                spec(signature="classify_x_to_y", version=None) + " " + EXAMPLE_80,
                Answer(
                    "result { classifications { classes { score: 42 } } } "
                    + spec(signature="classify_x_to_y")
                ),
            ),
        ),
    ),
    Case(
        "regress-success",
        "regression_service_test.cc RegressionSuccess",
        (
            Call(
                "Regress",
                spec(signature="regress_x_to_y", version=None) + " " + EXAMPLE_80,
                Answer("result { regressions { value: 42 } } " + spec(signature="regress_x_to_y")),
            ),
        ),
    ),
    # --- multi_inference_test.cc, on the TF1 and the TF2 half_plus_two ------------------------
    *_multi_inference_cases(HP2, "TF1"),
    *_multi_inference_cases(HP2_TF2, "TF2"),
    # --- get_model_status_impl_test.cc --------------------------------------------------------
    Case(
        "status-missing-model-spec",
        "get_model_status_impl_test.cc MissingOrEmptyModelSpecFailure",
        (Call("GetModelStatus", "", Error(INVALID)),),
    ),
    Case(
        "status-invalid-model-name",
        "get_model_status_impl_test.cc InvalidModelNameFailure",
        (Call("GetModelStatus", 'model_spec { name: "nonexistent_model" }', Error(NOT_FOUND)),),
    ),
    Case(
        "status-invalid-model-version",
        "get_model_status_impl_test.cc InvalidModelVersionFailure",
        (Call("GetModelStatus", spec(TWO_VERSIONS, version=125), Error(NOT_FOUND)),),
    ),
    Case(
        "status-all-versions",
        "get_model_status_impl_test.cc AllVersionsSuccess",
        (
            Call(
                "GetModelStatus",
                spec(TWO_VERSIONS, version=None),
                Answer(
                    "model_version_status { version: 123 state: AVAILABLE status {} } "
                    "model_version_status { version: 124 state: AVAILABLE status {} }"
                ),
            ),
        ),
    ),
    Case(
        "status-single-version",
        "get_model_status_impl_test.cc SingleVersionSuccess",
        (
            Call(
                "GetModelStatus",
                spec(TWO_VERSIONS, version=123),
                Answer("model_version_status { version: 123 state: AVAILABLE status {} }"),
            ),
        ),
    ),
    # --- get_model_metadata_impl_test.cc ------------------------------------------------------
    Case(
        "metadata-empty-or-invalid-field-list",
        "get_model_metadata_impl_test.cc EmptyOrInvalidMetadataFieldList",
        (
            Call("GetModelMetadata", "", Error(INVALID)),
            Call("GetModelMetadata", 'metadata_field: "some_stuff"', Error(INVALID)),
        ),
    ),
    Case(
        "metadata-missing-or-empty-model-spec",
        "get_model_metadata_impl_test.cc MissingOrEmptyModelSpec",
        (
            Call("GetModelMetadata", 'metadata_field: "signature_def"', Error(INVALID)),
            Call(
                "GetModelMetadata", 'model_spec {} metadata_field: "signature_def"', Error(INVALID)
            ),
            Call(
                "GetModelMetadata",
                'model_spec { name: "test" } metadata_field: "signature_def"',
                Error(NOT_FOUND),
            ),
        ),
    ),
    Case(
        "metadata-signatures",
        "get_model_metadata_impl_test.cc ReturnsSignaturesForValidModel",
        (
            Call(
                "GetModelMetadata",
                spec() + ' metadata_field: "signature_def"',
                Check(metadata_of_half_plus_two),
            ),
        ),
    ),
    # --- server_core_test.cc ModelSpecMultipleVersionsAvailable, through Predict -------------
    Case(
        "versions-and-labels",
        "server_core_test.cc ModelSpecMultipleVersionsAvailable",
        (
            *(
                Call(
                    "Predict",
                    f'model_spec {{ name: "{TWO_VERSIONS}" {choice} }} ' + floats("x", 2.0, (1,)),
                    Fields({"model_spec.version.value": version, "outputs[y].float_val[0]": 3.0}),
                )
                for choice, version in (
                    ("", 124),
                    ("version { value: 123 }", 123),
                    ('version_label: "A"', 123),
                    ('version_label: "B"', 124),
                )
            ),
            Call(
                "Predict",
                f'model_spec {{ name: "{TWO_VERSIONS}" version_label: "nonexistent label" }} '
                + floats("x", 2.0, (1,)),
                Error(INVALID, start="Unrecognized servable version label"),
            ),
        ),
    ),
]
