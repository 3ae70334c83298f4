"""The benchmark's one model, ``half_plus_two`` (y = 0.5x + 2), and its messages as bytes.

Pure: builds the requests every path is driven with (gRPC messages, and the JSON bodies of the
HTTP paths) and checks the answers that come back. TF Serving's messages are built with tfgate's
own stubs (``tfgate.tfs``), as TF Serving would read them; nothing here imports TensorFlow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from tfgate.tfs.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tfgate.tfs.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)
from tfgate.v1 import inference_pb2

MODEL = "half_plus_two"
VERSION = 1
SIGNATURE = "serving_default"
SIZES = {"small": 4, "large": 224 * 224 * 3}

Array = np.ndarray[Any, Any]


def inputs(size: str) -> Array:
    """The x sent for ``size``: a few plain numbers, or an image-like ramp."""
    count = SIZES[size]
    if count == 4:
        return np.array([1.0, 2.0, 5.0, -3.0], dtype=np.float32)
    return (np.arange(count) % 256).astype(np.float32) / np.float32(255.0)


def half_plus_two(x: Array) -> Array:
    return (x * np.float32(0.5) + np.float32(2.0)).astype(np.float32)


def float_tensor(values: Array) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]
        ),
        tensor_content=np.ascontiguousarray(values, dtype="<f4").tobytes(),
    )


def tfs_predict_request(x: Array) -> bytes:
    """TF Serving's PredictRequest, x packed in tensor_content, as any TF Serving client sends."""
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=MODEL, signature_name=SIGNATURE)
    )
    request.inputs["x"].CopyFrom(float_tensor(x))
    return request.SerializeToString()


def domain_predict_request(x: Array) -> bytes:
    """tfgate.v1.PredictRequest with x as a floats list."""
    request = inference_pb2.PredictRequest(model=MODEL)
    request.inputs["x"].floats.extend(x.tolist())
    return request.SerializeToString()


def rest_predict_body(x: Array) -> bytes:
    """TF Serving's REST predict body in row format: ``{"instances": [x0, x1, ...]}``."""
    return orjson.dumps({"instances": x}, option=orjson.OPT_SERIALIZE_NUMPY)


def v1_json_predict_body(x: Array) -> bytes:
    """tfgate.v1.PredictRequest as proto3 JSON (the model comes from the URL)."""
    return orjson.dumps({"inputs": {"x": {"floats": x}}}, option=orjson.OPT_SERIALIZE_NUMPY)


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the answer is not JSON ({exc}): {data[:200]!r}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"the answer is not a JSON object: {data[:200]!r}")
    return doc


def check_rest_response(data: bytes, x: Array) -> None:
    """Raises ValueError unless ``data`` is TF Serving's REST answer ``{"predictions": y}``."""
    doc = _json_object(data)
    if set(doc) != {"predictions"} or not isinstance(doc["predictions"], list):
        raise ValueError(f"unexpected answer: {data[:200]!r}")
    _check_values(np.array(doc["predictions"], dtype=np.float32), x)


def check_v1_json_response(data: bytes, x: Array) -> None:
    """Raises ValueError unless ``data`` is tfgate.v1's PredictResponse JSON with y = 0.5x + 2."""
    doc = _json_object(data)
    outputs = doc.get("outputs")
    y = outputs.get("y") if isinstance(outputs, dict) else None
    if doc.get("model") != MODEL or not isinstance(y, dict) or "floats" not in y:
        raise ValueError(f"unexpected answer: {data[:200]!r}")
    _check_values(np.array(y["floats"], dtype=np.float32), x)


def tfs_tensor_values(proto: tensor_pb2.TensorProto) -> Array:
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype="<f4")
    return np.array(proto.float_val, dtype=np.float32)


def check_tfs_response(data: bytes, x: Array) -> None:
    """Raises ValueError unless ``data`` is TF Serving's answer y = 0.5x + 2 for ``x``."""
    response = predict_pb2.PredictResponse.FromString(data)
    if "y" not in response.outputs:
        raise ValueError(f"no output 'y' in the answer (outputs: {list(response.outputs)})")
    _check_values(tfs_tensor_values(response.outputs["y"]), x)


def check_domain_response(data: bytes, x: Array) -> None:
    """Raises ValueError unless ``data`` is tfgate.v1's answer y = 0.5x + 2 for ``x``."""
    response = inference_pb2.PredictResponse.FromString(data)
    if response.model != MODEL or "y" not in response.outputs:
        raise ValueError(f"unexpected answer: model={response.model!r} {list(response.outputs)}")
    _check_values(np.array(response.outputs["y"].floats, dtype=np.float32), x)


def _check_values(y: Array, x: Array) -> None:
    if y.shape != x.shape or not np.allclose(y, half_plus_two(x), rtol=1e-6):
        raise ValueError(f"wrong y: {y[:4].tolist()}... for x {x[:4].tolist()}...")


def metadata_response() -> bytes:
    """GetModelMetadata's answer: signature serving_default, x float32 [-1] -> y float32 [-1]."""
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    definition = sig_map.signature_def[SIGNATURE]
    definition.method_name = "tensorflow/serving/predict"
    for side, alias in (("inputs", "x"), ("outputs", "y")):
        info = getattr(definition, side)[alias]
        info.name = f"{alias}:0"
        info.dtype = types_pb2.DT_FLOAT
        info.tensor_shape.dim.add(size=-1)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = MODEL
    response.model_spec.version.value = VERSION
    response.metadata["signature_def"].Pack(sig_map)
    return response.SerializeToString()


def status_response() -> bytes:
    response = get_model_status_pb2.GetModelStatusResponse()
    response.model_version_status.add(
        version=VERSION, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE
    )
    return response.SerializeToString()
