"""The local model server over the real SavedModels in models/, through tfgate's TF Serving stubs.

One server subprocess serves the whole module (the ``model_server`` fixture). Expected codes
and messages are TF Serving's own (predict_util.cc, server_core.cc, basic_manager.cc,
get_model_metadata_impl.cc, get_model_status_impl.cc, TensorFlow's saved_model/util.cc).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator
from typing import Any, cast

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.model_server_fixtures import ROOT, model_server  # noqa: F401
from tfgate.tfs.tensorflow.core.example import example_pb2
from tfgate.tfs.tensorflow.core.framework import tensor_pb2, types_pb2
from tfgate.tfs.tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

TIMEOUT = 10.0
X = [1.0, 2.0, 5.0]
SEQUENCE_LENGTH = 16


@pytest.fixture(scope="module")
def channel(model_server: str) -> Iterator[grpc.Channel]:  # noqa: F811
    with grpc.insecure_channel(model_server) as channel:
        yield channel


@pytest.fixture
def prediction(channel: grpc.Channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture
def models(channel: grpc.Channel) -> model_service_pb2_grpc.ModelServiceStub:
    return model_service_pb2_grpc.ModelServiceStub(channel)


def tensor(
    values: Any,
    dtype: types_pb2.DataType.ValueType = types_pb2.DT_FLOAT,
    shape: list[int] | None = None,
) -> Any:
    """A TensorProto in the *_val form."""
    proto = tensor_pb2.TensorProto(dtype=dtype)
    array = np.asarray(values)
    for size in array.shape if shape is None else shape:
        proto.tensor_shape.dim.add().size = size
    field = {
        types_pb2.DT_FLOAT: "float_val",
        types_pb2.DT_DOUBLE: "double_val",
        types_pb2.DT_INT64: "int64_val",
    }[dtype]
    getattr(proto, field).extend(array.reshape(-1).tolist())
    return proto


def predict_request(
    model: str = "half_plus_two",
    inputs: dict[str, Any] | None = None,
    *,
    version: int | None = None,
    label: str | None = None,
    signature: str = "",
    output_filter: tuple[str, ...] = (),
) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    if signature:
        request.model_spec.signature_name = signature
    for alias, proto in ({"x": tensor(X)} if inputs is None else inputs).items():
        request.inputs[alias].CopyFrom(proto)
    request.output_filter.extend(output_filter)
    return request


def rpc_error(call: Callable[..., Any], request: Any) -> grpc.Call:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=TIMEOUT)
    # The RpcError a unary call raises is also its grpc.Call, which carries the status.
    return cast(grpc.Call, info.value)


# --- Predict: version resolution and answers ---------------------------------------------


@pytest.mark.parametrize(
    ("version", "label", "expected_version", "offset"),
    [
        (None, None, 2, 3.0),
        (1, None, 1, 2.0),
        (2, None, 2, 3.0),
        (None, "stable", 1, 2.0),
        (None, "canary", 2, 3.0),
    ],
)
def test_predict_resolves_versions(
    prediction: Any, version: int | None, label: str | None, expected_version: int, offset: float
) -> None:
    response = prediction.Predict(predict_request(version=version, label=label), timeout=TIMEOUT)
    assert list(response.outputs["y"].float_val) == [0.5 * x + offset for x in X]
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.HasField("version")
    assert response.model_spec.version.value == expected_version
    assert response.model_spec.signature_name == "serving_default"


def test_version_and_label_are_one_field(prediction: Any) -> None:
    # version and version_label are a oneof: setting the label clears the version, so a
    # request cannot carry both and TF Serving never has to choose.
    request = predict_request(version=1)
    request.model_spec.version_label = "canary"
    assert not request.model_spec.HasField("version")
    response = prediction.Predict(request, timeout=TIMEOUT)
    assert response.model_spec.version.value == 2


def test_outputs_use_val_fields_by_default(prediction: Any) -> None:
    y = prediction.Predict(predict_request(), timeout=TIMEOUT).outputs["y"]
    assert y.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in y.tensor_shape.dim] == [3]
    assert y.tensor_content == b""
    assert list(y.float_val) == [3.5, 4.0, 5.5]


def test_inputs_in_tensor_content(prediction: Any) -> None:
    x = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_content=np.array(X, dtype="<f4").tobytes()
    )
    x.tensor_shape.dim.add().size = 3
    response = prediction.Predict(predict_request(inputs={"x": x}), timeout=TIMEOUT)
    assert list(response.outputs["y"].float_val) == [3.5, 4.0, 5.5]


def test_short_val_fields_repeat_the_last_value(prediction: Any) -> None:
    # Tensor::FromProto fills a tensor from fewer values by repeating the last one.
    x = tensor([1.0, 2.0], shape=[4])
    response = prediction.Predict(predict_request(inputs={"x": x}), timeout=TIMEOUT)
    assert list(response.outputs["y"].float_val) == [3.5, 4.0, 4.0, 4.0]


def test_output_filter_names_outputs(prediction: Any) -> None:
    response = prediction.Predict(predict_request(output_filter=("y",)), timeout=TIMEOUT)
    assert list(response.outputs) == ["y"]


# --- Predict: TF Serving's errors ----------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        pytest.param(
            predict_request(version=3),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(half_plus_two, 3)",
            id="unknown-version",
        ),
        pytest.param(
            predict_request("nope"),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
            id="unknown-model",
        ),
        pytest.param(
            predict_request("nope", version=1),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(nope, 1)",
            id="unknown-model-version",
        ),
        pytest.param(
            predict_request(label="beta"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: beta",
            id="unknown-label",
        ),
        pytest.param(
            predict_request(signature="nope"),
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "nope" not found.',
            id="unknown-signature",
        ),
        pytest.param(
            predict_request(""),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ModelSpec has no name specified.",
            id="no-model-name",
        ),
        pytest.param(
            predict_pb2.PredictRequest(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Missing ModelSpec",
            id="no-model-spec",
        ),
        pytest.param(
            predict_request(inputs={}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input size does not match signature: 0!=1 len({}) != len({x}). "
            "Sent extra: {}. Missing but required: {x}.",
            id="missing-input",
        ),
        pytest.param(
            predict_request(inputs={"x": tensor(X), "z": tensor(X)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input size does not match signature: 2!=1 len({x,z}) != len({x}). "
            "Sent extra: {z}. Missing but required: {}.",
            id="extra-input",
        ),
        pytest.param(
            predict_request(inputs={"z": tensor(X)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Signature input alias: x(feed name: serving_default_x:0) not found in request "
            "and no default value provided. Inputs expected to be in the request {z}, or "
            "default input alias set: ",
            id="wrong-input-name",
        ),
        pytest.param(
            predict_request(output_filter=("nope",)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "output tensor alias not found in signature: nope Outputs expected to be in the "
            "set {y}.",
            id="unknown-output",
        ),
        pytest.param(
            predict_request(output_filter=("y", "y")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "duplicate output tensor alias: y",
            id="duplicate-output",
        ),
        pytest.param(
            predict_request(inputs={"x": tensor(X, types_pb2.DT_DOUBLE)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expects arg[0] to be float but double is provided",
            id="wrong-dtype",
        ),
        pytest.param(
            predict_request(
                inputs={
                    "x": tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=b"abc")
                }
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "tensor parsing error: x",
            id="bad-tensor-content",
        ),
    ],
)
def test_predict_errors(
    prediction: Any, request_: Any, code: grpc.StatusCode, message: str
) -> None:
    error = rpc_error(prediction.Predict, request_)
    assert (error.code(), error.details()) == (code, message)


def test_runtime_errors_keep_their_code(prediction: Any) -> None:
    ids = np.zeros((1, SEQUENCE_LENGTH), dtype=np.int64)
    ids[0, 0] = 10_000
    request = predict_request("sentiment", {"token_ids": tensor(ids, types_pb2.DT_INT64)})
    error = rpc_error(prediction.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "indices[0,0] = 10000 is not in" in (error.details() or "")


# --- The text and numeric models, with their assets ----------------------------------------


def read_lines(name: str) -> list[str]:
    return (ROOT / "models" / name).read_text(encoding="utf-8").splitlines()


def token_ids(text: str) -> np.ndarray:
    vocabulary = {token: i for i, token in enumerate(read_lines("sentiment_assets/vocab.txt"))}
    assert (vocabulary["<pad>"], vocabulary["<unk>"]) == (0, 1)
    ids = [vocabulary.get(token, 1) for token in text.lower().split()][:SEQUENCE_LENGTH]
    return np.array(ids + [0] * (SEQUENCE_LENGTH - len(ids)), dtype=np.int64)


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("great fantastic movie", "positive"),
        ("terrible awful", "negative"),
        ("an okay film", "neutral"),
        ("", "neutral"),
    ],
)
def test_sentiment(prediction: Any, text: str, label: str) -> None:
    ids = token_ids(text)[np.newaxis, :]
    response = prediction.Predict(
        predict_request("sentiment", {"token_ids": tensor(ids, types_pb2.DT_INT64)}),
        timeout=TIMEOUT,
    )
    probabilities = response.outputs["probabilities"]
    assert [d.size for d in probabilities.tensor_shape.dim] == [1, 3]
    values = np.array(probabilities.float_val)
    assert values.sum() == pytest.approx(1.0, abs=1e-5)
    labels = read_lines("sentiment_assets/labels.txt")
    assert labels == ["negative", "neutral", "positive"]
    assert labels[int(values.argmax())] == label


def test_iris(prediction: Any) -> None:
    with (ROOT / "models" / "iris_assets" / "normalization.csv").open() as f:
        rows = list(csv.DictReader(f))
    mean = np.array([float(r["mean"]) for r in rows])
    std = np.array([float(r["std"]) for r in rows])
    samples = np.array([[5.1, 3.5, 1.4, 0.2], [5.9, 2.8, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]])
    features = ((samples - mean) / std).astype(np.float32)
    response = prediction.Predict(
        predict_request("iris", {"features": tensor(features)}), timeout=TIMEOUT
    )
    probabilities = np.array(response.outputs["probabilities"].float_val).reshape(3, 3)
    labels = read_lines("iris_assets/labels.txt")
    assert [labels[i] for i in probabilities.argmax(axis=1)] == [
        "setosa",
        "versicolor",
        "virginica",
    ]


# --- Classify and Regress ------------------------------------------------------------------


def examples(*xs: float) -> list[Any]:
    out = []
    for x in xs:
        example = example_pb2.Example()
        example.features.feature["x"].float_list.value.append(x)
        out.append(example)
    return out


def test_regress(prediction: Any) -> None:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.version_label = "stable"
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.extend(examples(1.0, 4.0))
    response = prediction.Regress(request, timeout=TIMEOUT)
    assert [r.value for r in response.result.regressions] == [2.5, 4.0]
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "regress_x_to_y"


def test_classify(prediction: Any) -> None:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.extend(examples(2.0))
    response = prediction.Classify(request, timeout=TIMEOUT)
    [classifications] = response.result.classifications
    assert [(c.label, c.score) for c in classifications.classes] == [("", 4.0)]
    assert response.model_spec.version.value == 2


@pytest.mark.parametrize(
    ("signature", "with_input", "message"),
    [
        ("nope", True, "No signature was found with the name: nope"),
        ("serving_default", True, "No regression inputs found in SignatureDef: "),
        ("regress_x_to_y", False, "Input is empty."),
    ],
)
def test_regress_errors(prediction: Any, signature: str, with_input: bool, message: str) -> None:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = signature
    if with_input:
        request.input.example_list.examples.extend(examples(1.0))
    error = rpc_error(prediction.Regress, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(message)


# --- GetModelMetadata and GetModelStatus ---------------------------------------------------


def metadata_request(*fields: str, version: int | None = None) -> Any:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "half_plus_two"
    if version is not None:
        request.model_spec.version.value = version
    request.metadata_field.extend(fields)
    return request


def test_metadata_signature_def(prediction: Any) -> None:
    response = prediction.GetModelMetadata(
        metadata_request("signature_def", version=1), timeout=TIMEOUT
    )
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == ""
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    assert packed.Unpack(signature_defs)
    assert set(signature_defs.signature_def) == {
        "serving_default",
        "regress_x_to_y",
        "classify_x_to_y",
        "__saved_model_init_op",
    }
    serving = signature_defs.signature_def["serving_default"]
    assert serving.method_name == "tensorflow/serving/predict"
    assert serving.inputs["x"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in serving.inputs["x"].tensor_shape.dim] == [-1]
    assert serving.outputs["y"].dtype == types_pb2.DT_FLOAT


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        pytest.param(
            metadata_request(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "GetModelMetadataRequest must specify at least one metadata_field",
            id="no-field",
        ),
        pytest.param(
            metadata_request("signature_def", "inputs"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Metadata field inputs is not supported",
            id="other-field",
        ),
        pytest.param(
            metadata_request("signature_def", version=9),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(half_plus_two, 9)",
            id="unknown-version",
        ),
    ],
)
def test_metadata_errors(
    prediction: Any, request_: Any, code: grpc.StatusCode, message: str
) -> None:
    error = rpc_error(prediction.GetModelMetadata, request_)
    assert (error.code(), error.details()) == (code, message)


def status_request(name: str, version: int | None = None) -> Any:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    return request


def test_model_status_lists_versions(models: Any) -> None:
    response = models.GetModelStatus(status_request("half_plus_two"), timeout=TIMEOUT)
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert [(s.version, s.state) for s in response.model_version_status] == [
        (1, available),
        (2, available),
    ]
    assert all(s.status.error_code == 0 for s in response.model_version_status)
    assert all(s.status.error_message == "" for s in response.model_version_status)


def test_model_status_one_version(models: Any) -> None:
    response = models.GetModelStatus(status_request("sentiment", 1), timeout=TIMEOUT)
    assert [s.version for s in response.model_version_status] == [1]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (status_request("half_plus_two", 7), "Could not find version 7 of model half_plus_two"),
        (status_request("nope"), "Could not find any versions of model nope"),
    ],
)
def test_model_status_not_found(models: Any, request_: Any, message: str) -> None:
    error = rpc_error(models.GetModelStatus, request_)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, message)


def test_health(channel: grpc.Channel) -> None:
    health: Any = health_pb2_grpc.HealthStub(channel)
    for service in ("", "PredictionService", "ModelService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_this_process_never_imports_the_official_protos() -> None:
    # The official modules register the same proto names as tfgate's stubs: TensorFlow and
    # tensorflow_serving belong in the model server's process only.
    imported = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_serving")]
    assert imported == []
