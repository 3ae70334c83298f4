"""tfgate.batch: joining Predicts along the first dimension and cutting the answer, no I/O."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tfgate import batch, dtypes, tensors
from tfgate.errors import BadBackendAnswer, FailedPrecondition
from tfgate.tfs.tensorflow_serving.apis import model_pb2, predict_pb2

F32 = dtypes.BY_NAME["float32"]
STRING = dtypes.BY_NAME["string"]
SPEC = model_pb2.ModelSpec(name="m", signature_name="serving_default")


def request(output_filter: tuple[str, ...] = (), **inputs: Any) -> predict_pb2.PredictRequest:
    made = predict_pb2.PredictRequest(model_spec=SPEC, output_filter=output_filter)
    for name, array in inputs.items():
        dtype = STRING if array.dtype == object else F32
        made.inputs[name].CopyFrom(tensors.to_proto(array, dtype))
    return made


def member(**inputs: Any) -> batch.Member:
    found = batch.member_of(request(**inputs))
    assert found is not None
    return found


def arrays(message: Any, field: str) -> dict[str, np.ndarray]:
    return {k: tensors.from_proto(k, v)[1] for k, v in getattr(message, field).items()}


def test_members_are_joined_row_after_row() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.arange(6, 9, dtype=np.float32).reshape(1, 3)
    data, size = batch.merge([member(x=a), member(x=b)], SPEC)
    merged = predict_pb2.PredictRequest.FromString(data)
    assert size == 3
    assert merged.model_spec == SPEC
    np.testing.assert_array_equal(arrays(merged, "inputs")["x"], np.concatenate([a, b]))


def test_strings_are_joined_too() -> None:
    a = np.array([[b"a"], [b"b"]], dtype=object)
    b = np.array([[b"c"]], dtype=object)
    data, _ = batch.merge([member(t=a), member(t=b)], SPEC)
    joined = arrays(predict_pb2.PredictRequest.FromString(data), "inputs")["t"]
    assert joined.tolist() == [[b"a"], [b"b"], [b"c"]]


def test_padding_repeats_the_first_row_up_to_the_next_allowed_size() -> None:
    a = np.array([[1, 2]], dtype=np.float32)
    b = np.array([[3, 4], [5, 6]], dtype=np.float32)
    data, size = batch.merge([member(x=a), member(x=b)], SPEC, allowed=(2, 4, 8))
    assert size == 4
    joined = arrays(predict_pb2.PredictRequest.FromString(data), "inputs")["x"]
    assert joined.tolist() == [[1, 2], [3, 4], [5, 6], [1, 2]]
    assert batch.padded_size(9, (2, 4, 8)) == 9  # over every allowed size: as it is
    assert batch.padded_size(5, ()) == 5


def answer(**outputs: Any) -> predict_pb2.PredictResponse:
    made = predict_pb2.PredictResponse(model_spec=SPEC)
    for name, array in outputs.items():
        dtype = STRING if array.dtype == object else F32
        made.outputs[name].CopyFrom(tensors.to_proto(array, dtype))
    return made


def test_the_answer_is_cut_into_each_members_rows_and_padding_dropped() -> None:
    y = np.arange(8, dtype=np.float32).reshape(4, 2)
    labels = np.array([b"p", b"q", b"r", b"s"], dtype=object)
    parts = batch.split(answer(y=y, label=labels), [1, 2], 4, 1000)
    assert len(parts) == 2
    assert parts[0].model_spec == SPEC
    np.testing.assert_array_equal(arrays(parts[0], "outputs")["y"], y[:1])
    np.testing.assert_array_equal(arrays(parts[1], "outputs")["y"], y[1:3])
    assert arrays(parts[1], "outputs")["label"].tolist() == [b"q", b"r"]


def test_an_output_not_row_by_row_cannot_be_cut() -> None:
    total = answer(y=np.array([1.0, 2.0], dtype=np.float32))  # 2 values for a batch of 3
    with pytest.raises(FailedPrecondition, match="output 'y' has shape \\[2\\]") as caught:
        batch.split(total, [1, 2], 3, 1000)
    assert isinstance(caught.value, batch.Unsplittable) and caught.value.output == "y"
    scalar = answer(s=np.array(3.0, dtype=np.float32))
    with pytest.raises(batch.Unsplittable, match="output 's'"):
        batch.split(scalar, [1, 2], 3, 1000)


def test_tensor_content_that_does_not_divide_into_rows_is_a_bad_answer() -> None:
    broken = answer(y=np.zeros((3, 2), dtype=np.float32))
    broken.outputs["y"].tensor_content = b"\0" * 20  # 3 rows of 6.67 bytes
    with pytest.raises(BadBackendAnswer, match="20 bytes"):
        batch.split(broken, [1, 2], 3, 1000)


def test_a_listed_output_is_bounded_before_it_is_expanded() -> None:
    listed = predict_pb2.PredictResponse()
    y = listed.outputs["y"]
    y.dtype = F32.enum  # type: ignore[assignment]
    y.tensor_shape.dim.add(size=2)
    y.tensor_shape.dim.add(size=10**9)
    y.float_val.append(1.0)  # one value standing for 2e9
    with pytest.raises(BadBackendAnswer, match="more than tfgate's max_tensor_elements"):
        batch.split(listed, [1, 1], 2, 1000)
    small = predict_pb2.PredictResponse()
    small.outputs["y"].CopyFrom(y)
    small.outputs["y"].tensor_shape.dim[1].size = 2
    parts = batch.split(small, [1, 1], 2, 1000)
    assert arrays(parts[1], "outputs")["y"].tolist() == [[1.0, 1.0]]


def test_what_cannot_be_a_member() -> None:
    assert batch.member_of(request(x=np.array(1.0, dtype=np.float32))) is None  # a scalar
    two = request(a=np.zeros((2, 1), np.float32), b=np.zeros((3, 1), np.float32))
    assert batch.member_of(two) is None  # first dimensions differ
    assert batch.member_of(request(x=np.zeros((0, 2), np.float32))) is None  # no rows
    found = batch.member_of(request(a=np.zeros((2, 1), np.float32), b=np.zeros((2, 5), np.float32)))
    assert found is not None and found.rows == 2


def test_the_key_holds_dtypes_trailing_dimensions_and_the_filter_in_any_order() -> None:
    def key(array: np.ndarray, output_filter: tuple[str, ...] = ()) -> batch.Key:
        return batch.key_of(request(output_filter, x=array))

    assert key(np.zeros((1, 3), np.float32)) == key(np.zeros((5, 3), np.float32))
    assert key(np.zeros((1, 3), np.float32)) != key(np.zeros((1, 4), np.float32))
    assert key(np.zeros((1, 3), np.float32)) != key(np.zeros((1, 3, 1), np.float32))
    assert key(np.zeros((1, 1), np.float32)) != key(np.array([[b"a"]], dtype=object))
    assert key(np.zeros((1, 3), np.float32), ("a", "b")) == key(
        np.zeros((2, 3), np.float32), ("b", "a")
    )
    assert key(np.zeros((1, 3), np.float32), ("a",)) != key(np.zeros((1, 3), np.float32))
