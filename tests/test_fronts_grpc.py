"""The gRPC front's status table and request translation, without a server."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from tfgate.errors import Code, InvalidArgument
from tfgate.fronts import grpc as front
from tfgate.fronts import v1
from tfgate.v1 import inference_pb2


def test_every_code_has_a_grpc_status_of_its_name() -> None:
    assert set(front.STATUS) == set(Code)
    assert all(status.name == code.name for code, status in front.STATUS.items())
    assert set(front.STATUS.values()) == set(grpc.StatusCode)


def test_predict_of_keeps_fields_and_finds_large_floats_in_place() -> None:
    request = inference_pb2.PredictRequest(model="m", version=3, signature="s", output_filter=["y"])
    request.inputs["x"].floats.extend(np.arange(5000, dtype=np.float32).tolist())
    request.inputs["k"].ints.extend([1, 2])
    data = request.SerializeToString()
    given = v1.predict_of(data)
    assert (given.model, given.version, given.label, given.signature) == ("m", 3, "", "s")
    assert list(given.output_filter) == ["y"] and given.size == len(data)
    assert given.packed is not None and given.packed["x"][0] == 2
    assert bytes(given.packed["x"][1]) == np.arange(5000, dtype="<f4").tobytes()
    assert v1.predict_of(inference_pb2.PredictRequest(model="m").SerializeToString()).packed is None


def test_garbage_is_invalid_argument_naming_the_message() -> None:
    with pytest.raises(InvalidArgument, match=r"not a valid tfgate\.v1\.PredictRequest"):
        v1.predict_of(b"\xff\xff\xff")
