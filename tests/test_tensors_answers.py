"""tfgate.tensors and tfgate.translate reading TF Serving's answers, without a server: the same
malformed outputs tests/test_backend_answers.py sends through every front."""

from __future__ import annotations

import pytest

from tests.test_backend_answers import MALFORMED_PREDICT, MODEL, tensor
from tfgate import dtypes, signatures, tensors, translate
from tfgate.errors import BadBackendAnswer, Unsupported
from tfgate.plans.plan import identity
from tfgate.tfs.tensorflow.core.framework import types_pb2
from tfgate.tfs.tensorflow_serving.apis import predict_pb2
from tfgate.v1 import inference_pb2

# Refused on their shapes alone, before any value is read: the size of the others is bounded.
SHAPES = {
    "minus one dim",
    "negative dim",
    "unknown rank",
    "broadcast 2**40",
    "overflowing shape",
    "overflow past zero",
}


@pytest.mark.parametrize("case", [c for c in MALFORMED_PREDICT if "output" not in c])
def test_each_reading_of_an_output_refuses_what_the_fronts_refuse(case: str) -> None:
    answer = predict_pb2.PredictResponse.FromString(MALFORMED_PREDICT[case][0])
    needle = MALFORMED_PREDICT[case][1]
    if case in SHAPES:
        with pytest.raises(BadBackendAnswer) as refused:
            translate.check_answer(answer, {"y"}, 2**24)
        assert refused.value.message.startswith("TF Serving's answer")
        assert needle in refused.value.message
        return
    translate.check_answer(answer, {"y"}, 2**24)
    proto = answer.outputs["y"]
    for read in (tensors.proto_to_domain_chunks, tensors.from_proto):
        with pytest.raises(BadBackendAnswer) as refused:
            read("output 'y'", proto)
        assert refused.value.message.startswith("TF Serving's answer")
        assert needle in refused.value.message


def test_more_dimensions_than_numpy_holds() -> None:
    floats = tensor(types_pb2.DT_FLOAT, [1] * 70, float_val=[2.5])
    carried = inference_pb2.Tensor.FromString(
        b"".join(tensors.proto_to_domain_chunks("output 'y'", floats))
    )
    assert list(carried.shape) == [1] * 70 and list(carried.floats) == [2.5]
    with pytest.raises(Unsupported, match=r"output 'y': 70 dimensions, more than the 64"):
        tensors.from_proto("output 'y'", tensor(types_pb2.DT_INT32, [1] * 70, int_val=[1]))


def test_an_answer_from_another_version_needs_no_particular_outputs() -> None:
    meta = signatures.ModelMetadata(
        MODEL,
        1,
        {
            "serving_default": signatures.Signature(
                "tensorflow/serving/predict",
                {},
                {"y": signatures.TensorSpec(dtypes.BY_NAME["float32"], (-1,))},
            )
        },
    )
    plan = identity(meta, "serving_default", meta.signatures["serving_default"])
    assert plan.expected(None, 1) == {"y"}
    assert plan.expected(None, 2) == ()
    assert plan.expected(frozenset({"y"}), 2) == {"y"}
