"""Pure translation: tfgate.v1 requests to TF Serving's wire form and back, without a server."""

from __future__ import annotations

import numpy as np

from tfgate import dtypes, tensors, translate
from tfgate.domain import Answer
from tfgate.tfs.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tfgate.tfs.tensorflow_serving.apis import predict_pb2


def test_backend_request_bytes_parse_as_tf_serving_request() -> None:
    sel = translate.Selector("m", 0, "canary")
    arrays: dict[str, tuple[dtypes.DType, np.ndarray]] = {
        "x": (dtypes.BY_NAME["float32"], np.array([[1.5, 2.5]], dtype=np.float32)),
        "": (dtypes.BY_NAME["int64"], np.zeros((0,), dtype=np.int64)),
    }
    written = [(k, tensors.to_proto_chunks(a, d)) for k, (d, a) in arrays.items()]
    request = translate.backend_request(sel, "sig", written, ["y", "z"]).parse()
    assert request.model_spec.name == "m" and request.model_spec.version_label == "canary"
    assert request.model_spec.signature_name == "sig"
    assert not request.model_spec.HasField("version")
    assert list(request.output_filter) == ["y", "z"]
    x = request.inputs["x"]
    assert [d.size for d in x.tensor_shape.dim] == [1, 2]
    assert np.frombuffer(x.tensor_content, "<f4").tolist() == [1.5, 2.5]
    assert [d.size for d in request.inputs[""].tensor_shape.dim] == [0]


def test_predict_response_bytes_parse_as_domain_response() -> None:
    answer = predict_pb2.PredictResponse()
    answer.model_spec.name = "m"
    answer.model_spec.version.value = 3
    answer.outputs["y"].CopyFrom(
        tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=2)]
            ),
            float_val=[1.0, 2.0],
        )
    )
    outputs = [(k, tensors.FromBackend(answer.outputs[k])) for k in answer.outputs]
    encoded = translate.v1_response(Answer("m", 3, "serving_default", outputs))
    assert encoded.version == 3
    parsed = encoded.parse()
    assert (parsed.model, parsed.version, parsed.signature) == ("m", 3, "serving_default")
    assert list(parsed.outputs["y"].floats) == [1.0, 2.0]
    assert list(parsed.outputs["y"].shape) == [2] and parsed.outputs["y"].dtype == "float32"
