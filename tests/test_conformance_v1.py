"""TF Serving's own test expectations, through tfgate.v1, where they apply.

The cases of tests/conformance_cases.py are TF Serving's messages. Here each Predict,
GetModelStatus and GetModelMetadata call is translated into its tfgate.v1 form (Predict, and
GetModel for both model calls), sent to ``tfgate serve`` in front of the local model server, and
TF Serving's expectation is translated too:

- an error keeps its code;
- an answer keeps its model, version, signature, output names, dtypes and values; its shapes
  are compared where the tfgate.v1 request could say the same shapes. tfgate.v1 cannot send an
  explicit scalar (an empty ``shape`` means "fit the signature"), so a scalar TF Serving feeds
  as it is arrives through tfgate.v1 in the signature's shape, with the same values;
- an explicit shape that contradicts the signature is refused by tfgate.v1, which is stricter
  than TF Serving here (README, docs/api.md). ``STRICTER`` lists every such call by case; each
  must be refused naming the input, and the same values without a shape must answer what TF
  Serving answers. A refusal not listed, or a listed call accepted, fails.

Classify, Regress and MultiInference have no tfgate.v1 form; their cases run only against TF
Serving's API (tests/test_conformance.py). GetModelMetadata's ``metadata_field`` has none
either: GetModel always returns the signatures.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import text_format

from tests.conformance_cases import CASES, HP2, Answer, Call, Case, Check, Error, Fields
from tests.model_server_fixtures import Conformance, conformance  # noqa: F401
from tfgate.tfs.tensorflow.core.framework import types_pb2
from tfgate.tfs.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)
from tfgate.v1 import inference_pb2, inference_pb2_grpc

TIMEOUT = 30.0
V1_RPCS = {"Predict", "GetModelStatus", "GetModelMetadata"}
# (case id, index of the call in the case) -> the input whose explicit shape tfgate.v1 refuses:
# x of shape [1] into the signature's (None, 1), which TF Serving feeds unchecked.
STRICTER: dict[tuple[str, int], str] = {
    ("predict-x-of-shape-1", 0): "x",
    ("predict-x-of-shape-1", 1): "x",
    ("good-model-config", 0): "x",
    ("good-model-config", 1): "x",
    **{("versions-and-labels", i): "x" for i in range(5)},
}
DTYPES = {types_pb2.DT_FLOAT: "float32", types_pb2.DT_STRING: "string"}
STATES = {
    get_model_status_pb2.ModelVersionStatus.AVAILABLE: "AVAILABLE",
}

V1_CASES = [c for c in CASES if {item.rpc for item in c.calls} <= V1_RPCS]


@pytest.fixture(scope="module")
def stub(conformance: Conformance) -> Iterator[inference_pb2_grpc.InferenceServiceStub]:  # noqa: F811
    channel = grpc.insecure_channel(conformance.targets["tfgate"])
    try:
        yield inference_pb2_grpc.InferenceServiceStub(channel)
    finally:
        channel.close()


# --- requests ---------------------------------------------------------------------------------


def v1_tensor(proto: Any, with_shape: bool) -> inference_pb2.Tensor:
    tensor = inference_pb2.Tensor()
    if with_shape:
        tensor.shape.extend(d.size for d in proto.tensor_shape.dim)
    if proto.dtype == types_pb2.DT_FLOAT:
        tensor.floats.extend(proto.float_val)
    elif proto.dtype == types_pb2.DT_STRING:
        tensor.bytes_values.extend(proto.string_val)
    else:
        raise AssertionError(f"no tfgate.v1 form written for dtype {proto.dtype}")
    return tensor


def v1_predict(text: str, with_shapes: bool = True) -> inference_pb2.PredictRequest:
    request = text_format.Parse(text, predict_pb2.PredictRequest())
    spec = request.model_spec
    v1 = inference_pb2.PredictRequest(
        model=spec.name,
        version=spec.version.value,
        version_label=spec.version_label,
        signature=spec.signature_name,
        output_filter=list(request.output_filter),
    )
    for key, proto in request.inputs.items():
        v1.inputs[key].CopyFrom(v1_tensor(proto, with_shapes))
    return v1


def v1_get_model(rpc: str, text: str) -> inference_pb2.GetModelRequest:
    if rpc == "GetModelStatus":
        spec = text_format.Parse(text, get_model_status_pb2.GetModelStatusRequest()).model_spec
    else:
        spec = text_format.Parse(text, get_model_metadata_pb2.GetModelMetadataRequest()).model_spec
    return inference_pb2.GetModelRequest(
        model=spec.name, version=spec.version.value, version_label=spec.version_label
    )


def scalar_inputs(text: str) -> bool:
    """Whether TF Serving's request holds an input tfgate.v1 cannot shape alike (a scalar)."""
    request = text_format.Parse(text, predict_pb2.PredictRequest())
    return any(not proto.tensor_shape.dim for proto in request.inputs.values())


# --- expectations -----------------------------------------------------------------------------


def expected_outputs(text: str) -> dict[str, tuple[str, list[int], list[float]]]:
    response = text_format.Parse(text, predict_pb2.PredictResponse())
    return {
        key: (DTYPES[proto.dtype], [d.size for d in proto.tensor_shape.dim], list(proto.float_val))
        for key, proto in response.outputs.items()
    }


def v1_field(response: inference_pb2.PredictResponse, path: str) -> Any:
    """A Fields path of TF Serving's PredictResponse, read from tfgate.v1's answer."""
    if path == "model_spec.name":
        return response.model
    if path == "model_spec.signature_name":
        return response.signature
    if path == "model_spec.version.value":
        return response.version
    found = re.fullmatch(r"(len\()?outputs\[(\w+)\]\.(\w+)(?:\[(\d+)\])?\)?", path)
    assert found, f"no tfgate.v1 reading written for {path}"
    counted, key, field, index = found.groups()
    tensor = response.outputs[key]
    if field == "dtype":
        return tensor.dtype
    assert field == "float_val", path
    if counted:
        return len(tensor.floats)
    return tensor.floats[int(index)]


def v1_value(path: str, value: Any) -> Any:
    return DTYPES[value] if path.endswith(".dtype") else value


def check_predict_answer(
    response: inference_pb2.PredictResponse, expect: Answer | Fields, compare_shapes: bool
) -> None:
    if isinstance(expect, Fields):
        got = {path: v1_field(response, path) for path in expect.values}
        assert got == {p: v1_value(p, v) for p, v in expect.values.items()}
        return
    want = text_format.Parse(expect.text, predict_pb2.PredictResponse())
    spec = want.model_spec
    assert (response.model, response.version, response.signature) == (
        spec.name,
        spec.version.value,
        spec.signature_name,
    )
    outputs = expected_outputs(expect.text)
    assert sorted(response.outputs) == sorted(outputs)
    for key, (dtype, shape, values) in outputs.items():
        tensor = response.outputs[key]
        assert (tensor.dtype, list(tensor.floats)) == (dtype, values), key
        if compare_shapes:
            assert list(tensor.shape) == shape, key


def check_model(model: inference_pb2.Model, rpc: str, request: str, expect: Answer | Check) -> None:
    if isinstance(expect, Check):
        assert rpc == "GetModelMetadata"
        metadata_of_half_plus_two(model)
        return
    want = text_format.Parse(expect.text, get_model_status_pb2.GetModelStatusResponse())
    states = {s.version: STATES[s.state] for s in want.model_version_status}
    spec = text_format.Parse(request, get_model_status_pb2.GetModelStatusRequest()).model_spec
    got = {v.version: v.state for v in model.versions}
    if spec.HasField("version"):
        # GetModel lists every version and shows the one asked for.
        assert model.version == spec.version.value
        assert {spec.version.value: got.get(spec.version.value)} == states
    else:
        assert got == states
    assert all(not v.error for v in model.versions)


def metadata_of_half_plus_two(model: inference_pb2.Model) -> None:
    """testGetModelMetadata and ReturnsSignaturesForValidModel, in tfgate.v1's terms."""
    assert (model.name, model.version) == (HP2, 123)
    assert sorted(model.signatures) == sorted(
        [
            "serving_default",
            "regress_x_to_y",
            "regress_x_to_y2",
            "regress_x2_to_y3",
            "classify_x_to_y",
            "classify_x2_to_y3",
        ]
    )
    regress = model.signatures["regress_x_to_y"]
    assert (regress.method, list(regress.inputs), list(regress.outputs)) == (
        "tensorflow/serving/regress",
        ["inputs"],
        ["outputs"],
    )
    x = model.signatures["serving_default"].inputs["x"]
    assert (x.dtype, list(x.shape), x.unknown_rank) == ("float32", [-1, 1], False)


# --- the calls --------------------------------------------------------------------------------


def check(stub: inference_pb2_grpc.InferenceServiceStub, case: Case, index: int) -> None:
    item: Call = case.calls[index]
    expect = item.expect
    where = f"{case.id} call {index}: {item.rpc} {item.request!r}"
    if item.rpc == "Predict":
        send: Any = lambda: stub.Predict(v1_predict(item.request), timeout=TIMEOUT)  # noqa: E731
    else:
        send = lambda: stub.GetModel(v1_get_model(item.rpc, item.request), timeout=TIMEOUT)  # noqa: E731
    if isinstance(expect, Error):
        with pytest.raises(grpc.RpcError) as info:
            send()
        error: Any = info.value
        assert error.code() == expect.code, f"{where}: {error.code()} {error.details()!r}"
        return
    stricter = STRICTER.get((case.id, index))
    if item.rpc != "Predict":
        assert isinstance(expect, Answer | Check)
        check_model(send(), item.rpc, item.request, expect)
        return
    assert isinstance(expect, Answer | Fields)
    if stricter is None:
        response = send()
        check_predict_answer(response, expect, compare_shapes=not scalar_inputs(item.request))
        return
    with pytest.raises(grpc.RpcError) as refused:
        send()
    error = refused.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{where}: {error.details()!r}"
    assert f"'{stricter}'" in error.details() and "shape" in error.details(), error.details()
    unshaped = stub.Predict(v1_predict(item.request, with_shapes=False), timeout=TIMEOUT)
    check_predict_answer(unshaped, expect, compare_shapes=False)


@pytest.mark.parametrize("case", V1_CASES, ids=[c.id for c in V1_CASES])
def test_tf_serving_expectation_through_v1(
    stub: inference_pb2_grpc.InferenceServiceStub, case: Case
) -> None:
    for index in range(len(case.calls)):
        check(stub, case, index)


def test_every_stricter_call_is_a_case() -> None:
    calls = {(c.id, i) for c in V1_CASES for i in range(len(c.calls))}
    assert set(STRICTER) <= calls
    assert len(V1_CASES) >= 20  # Predict, status and metadata cases of five TF Serving tests
