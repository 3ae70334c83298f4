"""Hypothesis against tfgate's reading of TF Serving's answers: random malformed PredictResponse
and GetModelMetadataResponse bytes, read through every front that converts them. None may end
as the generic "internal error in tfgate" (an unexpected exception), and tfgate keeps serving.

tfgate and the fake TF Serving run on an event loop of their own in a thread (as in
tests/test_http_fuzz.py), so that examples run one by one from hypothesis' plain functions.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Running
from tests.fake_tfserving import FakeTFServing
from tests.http_client import call
from tests.test_backend_answers import (
    FRONTS,
    METADATA_FRONTS,
    MODEL,
    half_plus_two_signature,
    metadata_over_rest,
)
from tfgate import wire
from tfgate.app import Gateway
from tfgate.config import Config
from tfgate.errors import INTERNAL_MESSAGE
from tfgate.tfs.tensorflow.core.framework import tensor_pb2
from tfgate.tfs.tensorflow.core.protobuf import meta_graph_pb2
from tfgate.tfs.tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2
from tfgate.v1 import inference_pb2_grpc


class Stack:
    """The fake TF Serving and tfgate (gRPC and HTTP), on a loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = FakeTFServing()
        self.running: Running | None = None

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def _start(self) -> None:
        await self.fake.start()
        config = Config(
            listen="127.0.0.1:0",
            http_listen="127.0.0.1:0",
            backend=self.fake.target,
            max_tensor_elements=100_000,
        )
        gateway = Gateway(config)
        port = await gateway.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.running = Running(gateway, channel, inference_pb2_grpc.InferenceServiceStub(channel))

    async def _stop(self) -> None:
        assert self.running is not None
        await self.running.channel.close()
        await self.running.gateway.stop(grace=0)
        await self.fake.stop()

    def stop(self) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    running = Stack()
    running.run(running._start())
    yield running
    running.stop()


def field(number: int, payload: bytes) -> bytes:
    return wire.header(number, len(payload)) + payload


def varint_field(number: int, value: int) -> bytes:
    return wire.varint(number << 3) + wire.varint(value & 0xFFFF_FFFF_FFFF_FFFF)


DIMS = st.sampled_from([0, 1, 2, 3, 7, -1, -2, 2**20, 2**31, 2**40, 2**62, 2**63 - 1, -(2**63)])
# TensorProto's value fields by number: float_val 5, double_val 6, int_val 7, string_val 8,
# scomplex_val 9, int64_val 10, bool_val 11, dcomplex_val 12, half_val 13, uint32_val 16,
# uint64_val 17; tensor_content 4.
PACKED_VARINTS = (7, 10, 11, 13, 16, 17)


@st.composite
def tensor_protos(draw: st.DrawFn) -> bytes:
    """A TensorProto, as bytes: any dtype, any shape, values in any fields."""
    parts = [varint_field(1, draw(st.sampled_from([*range(0, 31), 101, 119, 300])))]
    dims = draw(
        st.one_of(
            st.lists(DIMS, max_size=4),
            st.integers(min_value=60, max_value=80).map(lambda n: [1] * n),
        )
    )
    shape = b"".join(field(2, varint_field(1, d)) for d in dims)
    if draw(st.integers(0, 9)) == 0:
        shape += varint_field(3, 1)  # unknown_rank
    parts.append(field(2, shape))
    for number in draw(st.lists(st.sampled_from([4, 5, 6, 8, 9, *PACKED_VARINTS]), max_size=3)):
        if number == 4:
            parts.append(field(4, draw(st.binary(max_size=64))))
        elif number in (5, 9):
            parts.append(
                field(number, draw(st.binary(max_size=8).map(lambda b: b[: len(b) // 4 * 4])))
            )
        elif number in (6, 12):
            parts.append(
                field(number, draw(st.binary(max_size=16).map(lambda b: b[: len(b) // 8 * 8])))
            )
        elif number == 8:
            parts.append(field(8, draw(st.binary(max_size=6))))
        else:
            values = draw(
                st.lists(st.integers(min_value=-(2**63), max_value=2**64 - 1), max_size=5)
            )
            parts.append(
                field(number, b"".join(wire.varint(v & 0xFFFF_FFFF_FFFF_FFFF) for v in values))
            )
    return b"".join(parts)


@st.composite
def predict_answers(draw: st.DrawFn) -> bytes:
    """A PredictResponse, as bytes; sometimes damaged after it is written."""
    names = draw(st.lists(st.sampled_from([b"y", b"z", b"", b"\xff"]), max_size=3))
    data = b"".join(field(1, field(1, name) + field(2, draw(tensor_protos()))) for name in names)
    if draw(st.booleans()):
        data += field(2, field(1, MODEL.encode()) + field(2, varint_field(1, 1)))
    damage = draw(st.integers(0, 5))
    if damage == 0 and data:
        cut = draw(st.integers(0, len(data) - 1))
        data = data[:cut]
    elif damage == 1 and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    return data


@st.composite
def metadata_answers(draw: st.DrawFn) -> bytes:
    """A GetModelMetadataResponse, as bytes: a SignatureDefMap with odd keys, shapes and
    encodings, or damaged bytes, in an Any of the right type or another."""
    entries = []
    for key in draw(
        st.lists(st.sampled_from([b"serving_default", b"\xff", b"", b"x"]), max_size=2)
    ):
        definition = half_plus_two_signature(draw(st.lists(DIMS, max_size=3)))
        x = definition.inputs["x"]
        x.dtype = draw(st.sampled_from([0, 1, 7, 9, 19, 300]))  # type: ignore[assignment]
        if draw(st.integers(0, 4)) == 0:
            x.coo_sparse.values_tensor_name = "v:0"
        if draw(st.integers(0, 4)) == 0:
            x.tensor_shape.unknown_rank = True
        entries.append(field(1, field(1, key) + field(2, definition.SerializeToString())))
    value = b"".join(entries)
    if draw(st.integers(0, 3)) == 0:
        value = draw(st.binary(max_size=24))
    type_url = draw(
        st.sampled_from(
            [
                "type.googleapis.com/tensorflow.serving.SignatureDefMap",
                "type.googleapis.com/tensorflow.TensorProto",
                "",
            ]
        )
    )
    packed = field(1, type_url.encode()) + field(2, value)
    key = draw(st.sampled_from([b"signature_def", b"other"]))
    data = field(2, field(1, key) + field(2, packed))
    if draw(st.booleans()):
        name = draw(st.sampled_from([MODEL.encode(), b"\xff"]))
        data = field(1, field(1, name) + field(2, varint_field(1, 1))) + data
    return data


def judge(outcome: tuple[str, str]) -> None:
    code, message = outcome
    assert message != INTERNAL_MESSAGE and INTERNAL_MESSAGE not in message, code
    assert "Traceback" not in message
    # Not a failure to reach TF Serving or to answer in time either: each answer is read at once.
    assert code not in ("UNKNOWN", "CANCELLED", "DEADLINE_EXCEEDED", "UNAVAILABLE", "503", "504")


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(answer=predict_answers(), front=st.sampled_from(list(FRONTS)))
def test_no_predict_answer_ends_as_an_unexpected_error(
    stack: Stack, answer: bytes, front: str
) -> None:
    assert stack.running is not None
    stack.fake.answer_next("Predict", answer)
    judge(stack.run(FRONTS[front](stack.running)))
    assert not stack.fake.crafted["Predict"]  # the answer was read


@FUZZ
@given(answer=metadata_answers(), front=st.sampled_from(list(METADATA_FRONTS)))
def test_no_metadata_answer_ends_as_an_unexpected_error(
    stack: Stack, answer: bytes, front: str
) -> None:
    assert stack.running is not None
    # Forgotten each time, so that every example has tfgate read the metadata.
    stack.fake.answer_next("GetModelMetadata", answer)
    stack.run(forget_signatures(stack.running))
    judge(stack.run(METADATA_FRONTS[front](stack.running)))
    # A front that did not ask for metadata leaves it queued; odd but valid signatures are
    # cached: neither may reach the next example or test.
    stack.fake.crafted.clear()
    stack.run(forget_signatures(stack.running))


@FUZZ
@given(answer=metadata_answers())
def test_no_metadata_answer_fails_tf_servings_rest_api(stack: Stack, answer: bytes) -> None:
    assert stack.running is not None
    stack.fake.answer_next("GetModelMetadata", answer)
    status, message = stack.run(metadata_over_rest(stack.running))
    assert message != INTERNAL_MESSAGE, status


async def forget_signatures(gw: Running) -> None:
    gw.gateway.catalog.forget(MODEL)
    gw.gateway.inference.plans.forget(MODEL)


def test_still_serving_after_the_fuzzing(stack: Stack) -> None:
    assert stack.running is not None
    for front in FRONTS.values():
        code, found = stack.run(front(stack.running))
        assert code == "OK" and "2.5" in found, found
    answer = stack.run(call(stack.running, "GET", f"/v1/models/{MODEL}/versions/1/metadata"))
    assert answer.status == 200


def test_the_generators_write_the_messages_they_claim() -> None:
    """Undamaged, the generated bytes are the messages named (so the fuzzing reaches tfgate's
    reading of answers, not only protobuf's parser)."""
    response = predict_pb2.PredictResponse.FromString(
        field(
            1,
            field(1, b"y") + field(2, varint_field(1, 1) + field(2, field(2, varint_field(1, 3)))),
        )
    )
    assert response.outputs["y"].tensor_shape.dim[0].size == 3
    assert tensor_pb2.TensorProto.FromString(varint_field(1, 7)).dtype == 7
    packed = field(1, b"type.googleapis.com/tensorflow.serving.SignatureDefMap") + field(
        2, field(1, field(1, b"k") + field(2, meta_graph_pb2.SignatureDef().SerializeToString()))
    )
    metadata = get_model_metadata_pb2.GetModelMetadataResponse.FromString(
        field(2, field(1, b"signature_def") + field(2, packed))
    )
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert metadata.metadata["signature_def"].Unpack(signature_map)
    assert list(signature_map.signature_def) == ["k"]
