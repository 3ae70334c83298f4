"""TF Serving's answers as tfgate reads them: a malformed one is a specific error naming the output
or field, none makes tfgate allocate without bound, and no value is changed silently.

The fake TF Serving answers crafted PredictResponse and GetModelMetadataResponse bytes
(``FakeTFServing.answer_next``), and each is read through every front that converts answers:
tfgate.v1 over gRPC, tfgate.v1 as JSON, and TF Serving's REST API. (The forwarded TF Serving
gRPC API passes answers on as bytes, unread; tests/test_passthrough.py.)
"""

from __future__ import annotations

import resource
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import json_format

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import FakeTFServing
from tests.http_client import call, start_http
from tfgate import wire
from tfgate.tfs.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tfgate.tfs.tensorflow.core.protobuf import meta_graph_pb2
from tfgate.tfs.tensorflow_serving.apis import get_model_metadata_pb2, model_pb2, predict_pb2
from tfgate.v1 import inference_pb2

pytestmark = pytest.mark.asyncio

MODEL = "half_plus_two"
T = inference_pb2.Tensor


def tensor(dtype: int, shape: list[int] | None, **values: Any) -> tensor_pb2.TensorProto:
    """A TensorProto as given: ``shape`` None is an unknown rank."""
    proto = tensor_pb2.TensorProto(dtype=dtype)  # type: ignore[arg-type]
    if shape is None:
        proto.tensor_shape.unknown_rank = True
    else:
        proto.tensor_shape.CopyFrom(
            tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]
            )
        )
    for name, value in values.items():
        if isinstance(value, bytes):
            setattr(proto, name, value)
        else:
            getattr(proto, name).extend(value)
    return proto


def predict_answer(**outputs: tensor_pb2.TensorProto) -> bytes:
    answer = predict_pb2.PredictResponse()
    answer.model_spec.name = MODEL
    answer.model_spec.version.value = 1
    answer.model_spec.signature_name = "serving_default"
    for name, proto in outputs.items():
        answer.outputs[name].CopyFrom(proto)
    return answer.SerializeToString()


def float_y(shape: list[int] | None, **values: Any) -> bytes:
    return predict_answer(y=tensor(types_pb2.DT_FLOAT, shape, **values))


# (answer bytes, what the message must name): each a PredictResponse TF Serving never sends.
MALFORMED_PREDICT = {
    "minus one dim": (float_y([-1], float_val=[1.0]), "output 'y': shape [-1]"),
    "negative dim": (float_y([2, -5], tensor_content=b"\0" * 8), "output 'y': shape [2, -5]"),
    "unknown rank": (float_y(None, float_val=[1.0]), "output 'y': a shape of unknown rank"),
    "broadcast 2**40": (float_y([2**20, 2**20], float_val=[1.0]), "output 'y'"),
    "overflowing shape": (float_y([2**62, 2**62, 4], float_val=[1.0]), "output 'y'"),
    "overflow past zero": (float_y([2**62, 2**62, 0], float_val=[]), "output 'y'"),
    "too many values": (float_y([1], float_val=[1.0, 2.0]), "output 'y': 2 values"),
    "short tensor_content": (float_y([2], tensor_content=b"\0" * 4), "output 'y': tensor_content"),
    "values in another list": (float_y([1], int_val=[1]), "output 'y'"),
    "two encodings": (
        float_y([1], float_val=[1.0], tensor_content=b"\0" * 4),
        "output 'y': values in both tensor_content and float_val",
    ),
    "string in tensor_content": (
        predict_answer(y=tensor(types_pb2.DT_STRING, [2], tensor_content=b"\x01a\x01b")),
        "output 'y': string values in tensor_content",
    ),
    "int8 out of range": (
        predict_answer(y=tensor(types_pb2.DT_INT8, [2], int_val=[1000, -1000])),
        "output 'y': int_val value 1000 is out of range for int8",
    ),
    "uint8 negative": (
        predict_answer(y=tensor(types_pb2.DT_UINT8, [1], int_val=[-1])),
        "output 'y': int_val value -1 is out of range for uint8",
    ),
    "int16 out of range": (
        predict_answer(y=tensor(types_pb2.DT_INT16, [1], int_val=[40000])),
        "for int16",
    ),
    "uint16 out of range": (
        predict_answer(y=tensor(types_pb2.DT_UINT16, [1], int_val=[70000])),
        "for uint16",
    ),
    "half_val over 16 bits": (
        predict_answer(y=tensor(types_pb2.DT_HALF, [1], half_val=[70000])),
        "output 'y': half_val value 70000 is not a float16 bit pattern",
    ),
    "half_val negative": (
        predict_answer(y=tensor(types_pb2.DT_BFLOAT16, [1], half_val=[-1])),
        "output 'y': half_val value -1 is not a bfloat16 bit pattern",
    ),
    "bool bytes other than 0 and 1": (
        predict_answer(y=tensor(types_pb2.DT_BOOL, [2], tensor_content=b"\x01\x02")),
        "output 'y': bool tensor_content holds a byte other than 0 or 1",
    ),
    "DT_INVALID": (predict_answer(y=tensor(0, [1], float_val=[1.0])), "output 'y': dtype"),
    "no outputs": (predict_answer(), "no outputs"),
    "another output than asked": (
        predict_answer(z=tensor(types_pb2.DT_FLOAT, [1], float_val=[1.0])),
        "output 'y'",
    ),
}


async def over_grpc(gw: Running) -> tuple[str, str]:
    request = inference_pb2.PredictRequest(model=MODEL, version=1, inputs={"x": T(floats=[1.0])})
    try:
        answer = await gw.stub.Predict(request, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", str(answer)


async def over_v1_json(gw: Running) -> tuple[str, str]:
    body = '{"version": "1", "inputs": {"x": {"floats": [1]}}}'
    answer = await call(gw, "POST", f"/tfgate/v1/models/{MODEL}:predict", body)
    found = answer.json()
    if answer.status == 200:
        return "OK", str(found)
    return found["status"], found["message"]


async def over_rest(gw: Running) -> tuple[str, str]:
    body = '{"instances": [1.0]}'
    answer = await call(gw, "POST", f"/v1/models/{MODEL}/versions/1:predict", body)
    found = answer.json()
    if answer.status == 200:
        return "OK", str(found)
    # TF Serving's REST table: 500 is INTERNAL (or UNKNOWN/DATA_LOSS), 501 UNIMPLEMENTED.
    return {500: "INTERNAL", 501: "UNIMPLEMENTED"}.get(answer.status, str(answer.status)), found[
        "error"
    ]


FRONTS = {"grpc": over_grpc, "v1_json": over_v1_json, "rest": over_rest}


@pytest_asyncio.fixture
async def stack(start_gateway: StartGateway) -> AsyncIterator[tuple[FakeTFServing, Running]]:
    fake = FakeTFServing()
    await fake.start()
    gw = await start_http(start_gateway, fake.target)
    yield fake, gw
    await fake.stop()


async def still_serving(gw: Running) -> None:
    for front in FRONTS.values():
        code, found = await front(gw)
        assert code == "OK", found
        assert "2.5" in found  # 1 * 0.5 + 2


@pytest.mark.parametrize("case", list(MALFORMED_PREDICT))
@pytest.mark.parametrize("front", list(FRONTS))
async def test_a_malformed_predict_answer_is_a_specific_internal_error(
    stack: tuple[FakeTFServing, Running], front: str, case: str
) -> None:
    fake, gw = stack
    answer, needle = MALFORMED_PREDICT[case]
    fake.answer_next("Predict", answer)
    code, message = await FRONTS[front](gw)
    assert code == "INTERNAL", message
    assert message.startswith("TF Serving's answer"), message
    assert needle in message
    await still_serving(gw)


async def refused_on_every_front(
    fake: FakeTFServing, gw: Running, answer: bytes, *needles: str
) -> int:
    """Sends ``answer`` to each front's call: each is INTERNAL at once, its message holding every
    needle. Returns the peak of what Python allocated meanwhile (tracemalloc), in bytes."""
    tracemalloc.start()
    try:
        for front in FRONTS.values():
            fake.answer_next("Predict", answer)
            started = time.monotonic()
            code, message = await front(gw)
            assert time.monotonic() - started < 1.0
            assert code == "INTERNAL", message
            assert all(needle in message for needle in needles), message
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_an_answer_declaring_30_million_values_from_one_is_refused_at_once(
    stack: tuple[FakeTFServing, Running],
) -> None:
    fake, gw = stack
    y = tensor(types_pb2.DT_FLOAT, [30_000_000], float_val=[1.0])
    answer = predict_pb2.PredictResponse(outputs={"y": y}).SerializeToString()
    assert len(answer) < 30
    await still_serving(gw)  # warm: the signature is cached, the channels are up
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    peak = await refused_on_every_front(fake, gw, answer, "output 'y'", "max_tensor_elements")
    assert peak < 8 * 1024 * 1024  # the expanded answer alone would be 120 MB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 60 * 1024


async def test_an_answer_within_max_tensor_elements_expands_from_one_value_only_so_far(
    stack: tuple[FakeTFServing, Running],
) -> None:
    """16 million floats from one: within max_tensor_elements (16 Mi), but 64 MB built from a
    24-byte answer (and over a gigabyte as JSON): refused before expanding, on every front."""
    fake, gw = stack
    y = tensor(types_pb2.DT_FLOAT, [16_000_000], float_val=[1.0])
    answer = predict_pb2.PredictResponse(outputs={"y": y}).SerializeToString()
    assert len(answer) < 30
    await still_serving(gw)
    peak = await refused_on_every_front(
        fake, gw, answer, "output 'y'", "carries 1 value for its 16000000"
    )
    assert peak < 8 * 1024 * 1024
    # Up to the bound, an output carrying fewer values is read as TensorFlow reads it.
    small = tensor(types_pb2.DT_FLOAT, [1000], float_val=[1.0, 2.0])
    for front in FRONTS.values():
        fake.answer_next("Predict", predict_pb2.PredictResponse(outputs={"y": small}))
        code, found = await front(gw)
        assert code == "OK", found
    await still_serving(gw)


async def test_outputs_are_bounded_together_by_max_tensor_elements(
    start_gateway: StartGateway,
) -> None:
    fake = FakeTFServing()
    await fake.start()
    try:
        gw = await start_http(start_gateway, fake.target, max_tensor_elements=1000)
        await still_serving(gw)
        each = tensor(types_pb2.DT_FLOAT, [600], float_val=[1.0])
        fits = predict_answer(y=tensor(types_pb2.DT_FLOAT, [1000], float_val=[1.0]))
        for front in FRONTS.values():
            fake.answer_next("Predict", fits)
            code, found = await front(gw)
            assert code == "OK", found
            fake.answer_next("Predict", predict_answer(y=each, z=each))
            code, message = await front(gw)
            assert code == "INTERNAL", message
            assert "1200 values" in message and "max_tensor_elements (1000)" in message
    finally:
        await fake.stop()


# What TF Serving writes, read back unchanged: the edges of each check above.
VALID_PREDICT = {
    "int8 edges": (
        predict_answer(y=tensor(types_pb2.DT_INT8, [2], int_val=[127, -128])),
        {"shape": ["2"], "ints": ["127", "-128"], "dtype": "int8"},
    ),
    "uint16 edges": (
        predict_answer(y=tensor(types_pb2.DT_UINT16, [2], int_val=[0, 65535])),
        {"shape": ["2"], "ints": ["0", "65535"], "dtype": "uint16"},
    ),
    "half_val edges": (
        # 0x3C00 is 1.0; 0xFBFF is -65504, the most negative finite half.
        predict_answer(y=tensor(types_pb2.DT_HALF, [2], half_val=[0x3C00, 0xFBFF])),
        {"shape": ["2"], "floats": [1.0, -65504.0], "dtype": "float16"},
    ),
    "broadcast": (
        float_y([2, 2], float_val=[1.0, 2.0]),
        {"shape": ["2", "2"], "floats": [1.0, 2.0, 2.0, 2.0], "dtype": "float32"},
    ),
    "empty": (
        float_y([0, 3]),
        {"shape": ["0", "3"], "dtype": "float32"},
    ),
    # No values at all are zeros, as TensorFlow reads a TensorProto (Tensor::FromProto).
    "no values": (
        predict_answer(y=tensor(types_pb2.DT_INT8, [3])),
        {"shape": ["3"], "ints": ["0", "0", "0"], "dtype": "int8"},
    ),
    "bools": (
        predict_answer(y=tensor(types_pb2.DT_BOOL, [2], tensor_content=b"\x01\x00")),
        {"shape": ["2"], "bools": [True, False], "dtype": "bool"},
    ),
}


@pytest.mark.parametrize("case", list(VALID_PREDICT))
async def test_valid_answers_pass_unchanged(
    stack: tuple[FakeTFServing, Running], case: str
) -> None:
    fake, gw = stack
    answer, expected = VALID_PREDICT[case]
    fake.answer_next("Predict", answer)
    request = inference_pb2.PredictRequest(model=MODEL, version=1, inputs={"x": T(floats=[1.0])})
    found = await gw.stub.Predict(request, timeout=10)
    assert json_format.MessageToDict(found.outputs["y"]) == expected
    fake.answer_next("Predict", answer)
    body = '{"version": "1", "inputs": {"x": {"floats": [1]}}}'
    http = await call(gw, "POST", f"/tfgate/v1/models/{MODEL}:predict", body)
    assert http.status == 200, http.body
    assert http.json()["outputs"]["y"] == expected


# --- metadata ---------------------------------------------------------------------------------


def metadata_answer(signature_map: bytes, type_url: str | None = None) -> bytes:
    answer = get_model_metadata_pb2.GetModelMetadataResponse()
    answer.model_spec.name = MODEL
    answer.model_spec.version.value = 1
    packed = answer.metadata["signature_def"]
    packed.type_url = type_url or (
        "type.googleapis.com/" + get_model_metadata_pb2.SignatureDefMap.DESCRIPTOR.full_name
    )
    packed.value = signature_map
    return answer.SerializeToString()


def signature_map_bytes(key: bytes, definition: meta_graph_pb2.SignatureDef) -> bytes:
    """A SignatureDefMap of one entry, its key written as raw bytes (maybe not UTF-8)."""
    entry = wire.length_delimited(1, key) + wire.length_delimited(2, definition.SerializeToString())
    return wire.length_delimited(1, entry)


def half_plus_two_signature(x_shape: list[int]) -> meta_graph_pb2.SignatureDef:
    definition = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    x = definition.inputs["x"]
    x.name, x.dtype = "x:0", types_pb2.DT_FLOAT
    for d in x_shape:
        x.tensor_shape.dim.add(size=d)
    y = definition.outputs["y"]
    y.name, y.dtype = "y:0", types_pb2.DT_FLOAT
    y.tensor_shape.dim.add(size=-1)
    return definition


MALFORMED_METADATA = {
    "corrupt Any": (metadata_answer(b"\xff\xff\xff"), "signature_def"),
    "Any of another type": (
        metadata_answer(b"", "type.googleapis.com/tensorflow.TensorProto"),
        "signature_def",
    ),
    "no signature_def": (
        get_model_metadata_pb2.GetModelMetadataResponse(
            model_spec=model_pb2.ModelSpec(name=MODEL)
        ).SerializeToString(),
        "signature_def",
    ),
    "signature key not UTF-8": (
        metadata_answer(signature_map_bytes(b"serving\xff", half_plus_two_signature([-1]))),
        "signature_def",
    ),
    "model name not UTF-8": (
        wire.length_delimited(1, wire.length_delimited(1, b"half\xff")),
        "GetModelMetadataResponse",
    ),
    "dimension below -1": (
        metadata_answer(signature_map_bytes(b"serving_default", half_plus_two_signature([-7]))),
        "input 'x': shape [-7]",
    ),
}


async def get_model_over_grpc(gw: Running) -> tuple[str, str]:
    try:
        answer = await gw.stub.GetModel(
            inference_pb2.GetModelRequest(model=MODEL, version=1), timeout=10
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", str(answer)


async def get_model_over_json(gw: Running) -> tuple[str, str]:
    answer = await call(gw, "GET", f"/tfgate/v1/models/{MODEL}?version=1")
    found = answer.json()
    return ("OK", str(found)) if answer.status == 200 else (found["status"], found["message"])


async def metadata_over_rest(gw: Running) -> tuple[str, str]:
    answer = await call(gw, "GET", f"/v1/models/{MODEL}/versions/1/metadata")
    found = answer.json()
    return ("OK", str(found)) if answer.status == 200 else (str(answer.status), found["error"])


METADATA_FRONTS = {
    **FRONTS,  # Predict reads the signatures first
    "get_model_grpc": get_model_over_grpc,
    "get_model_json": get_model_over_json,
}


@pytest.mark.parametrize("case", list(MALFORMED_METADATA))
@pytest.mark.parametrize("front", list(METADATA_FRONTS))
async def test_malformed_metadata_is_a_specific_internal_error(
    stack: tuple[FakeTFServing, Running], front: str, case: str
) -> None:
    fake, gw = stack
    answer, needle = MALFORMED_METADATA[case]
    fake.answer_next("GetModelMetadata", answer)
    code, message = await METADATA_FRONTS[front](gw)
    assert code == "INTERNAL", message
    assert message.startswith("TF Serving's answer"), message
    assert needle in message and f"model '{MODEL}'" in message, message
    await still_serving(gw)  # the bad answer was not cached


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("corrupt Any", "Failed to unpack 'Any' object to 'SignatureDefMap'"),
        ("Any of another type", "Failed to unpack 'Any' object to 'SignatureDefMap'"),
        ("signature key not UTF-8", "Failed to unpack 'Any' object to 'SignatureDefMap'"),
        ("no signature_def", "Failed to find 'signature_def' key"),
        ("model name not UTF-8", "not a valid GetModelMetadataResponse"),
    ],
)
async def test_malformed_metadata_over_tf_servings_rest_api(
    stack: tuple[FakeTFServing, Running], case: str, needle: str
) -> None:
    fake, gw = stack
    fake.answer_next("GetModelMetadata", MALFORMED_METADATA[case][0])
    status, message = await metadata_over_rest(gw)
    assert status == "500", message
    assert message.startswith("TF Serving's answer"), message
    assert needle in message
    assert (await metadata_over_rest(gw))[0] == "OK"


async def test_a_malformed_model_status_is_a_specific_internal_error(
    stack: tuple[FakeTFServing, Running],
) -> None:
    fake, gw = stack
    # model_version_status[0].status.error_message (fields 1, 3, 2) is a string: not UTF-8 here.
    status = wire.length_delimited(1, wire.length_delimited(3, wire.length_delimited(2, b"\xff")))
    outcomes = []
    for front in (get_model_over_grpc, get_model_over_json):
        fake.answer_next("GetModelStatus", status)
        outcomes.append(await front(gw))
    fake.answer_next("GetModelStatus", status)
    answer = await call(gw, "GET", f"/v1/models/{MODEL}")
    outcomes.append(("INTERNAL" if answer.status == 500 else "", answer.json()["error"]))
    for code, message in outcomes:
        assert code == "INTERNAL", message
        assert message == (
            f"TF Serving's answer for model '{MODEL}' is not a valid GetModelStatusResponse"
        )
    assert (await get_model_over_grpc(gw))[0] == "OK"
