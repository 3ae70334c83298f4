"""Conversion costs: tensors between tfgate.v1 and TF Serving, and TF Serving's REST JSON.

Tensors: 1,000,000 float32 from a tfgate.v1.Tensor to a TensorProto and back, tfgate's
converter (tfgate.tensors) against the floor, a plain copy of the same 4 MB with numpy, and
against TensorFlow's ``tf.make_tensor_proto`` / ``tf.make_ndarray``. TensorFlow runs in a
process of its own (bench/conversion_tf.py): it registers the same proto names as tfgate's
stubs, so the two never share a process, and this module imports tfgate only inside functions.

REST JSON: a 224x224x3 float32 image as TF Serving's ``{"instances": [...]}`` body (1.7 MB),
made into the backend's PredictRequest bytes by tfgate's own functions (the HTTP front's
``parse_predict``, then the identity plan's ``prepare``, as the request core runs them), against
``orjson.loads`` alone on the same body, and against a gateway built on protobuf's JSON support
(``json.loads``, then ``json_format.ParseDict`` of a TensorProto with ``float_val``, serialized;
tfgate's stubs of tensorflow.serving.PredictRequest, the same message and protobuf runtime as
the official ones). The answer's way back: tfgate's ``predict_body`` against ``orjson.dumps``
of the same float32 array. Run alone: ``python -m bench.conversion``.

Each figure is the median of several repetitions.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

COUNT = 1_000_000


def median_ms(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm caches and allocators
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure_tfgate(reps: int) -> dict[str, float]:
    from tfgate import dtypes, tensors
    from tfgate.tfs.tensorflow.core.framework import types_pb2
    from tfgate.v1 import inference_pb2

    float32 = dtypes.from_enum(types_pb2.DT_FLOAT)
    values = np.random.default_rng(0).standard_normal(COUNT).astype(np.float32)
    domain = inference_pb2.Tensor()
    domain.floats.extend(values.tolist())
    proto = tensors.to_proto(tensors.from_domain("x", domain, float32, (-1,)), float32)
    listed = type(proto)(dtype=proto.dtype, tensor_shape=proto.tensor_shape)
    listed.float_val.extend(values.tolist())

    def back(p: Any) -> bytes:
        # As tfgate.translate.predict_response writes an output into the answer.
        return b"".join(tensors.proto_to_domain_chunks("y", p))

    from tfgate import wire

    received = inference_pb2.PredictRequest(inputs={"x": domain}).SerializeToString()

    def forward() -> bytes:
        # What tfgate does with a large input: the floats are read in place from the request
        # bytes as received, and the TensorProto is written as wire bytes into the backend request.
        packed = wire.packed_inputs(received)["x"]
        return b"".join(tensors.encode_input("x", domain, float32, (-1,), packed)[1])

    def forward_from_message() -> bytes:
        return b"".join(tensors.encode_input("x", domain, float32, (-1,))[1])

    return {
        "numpy_copy_4mb_ms": median_ms(lambda: np.copy(values), reps),
        "tfgate_to_proto_ms": median_ms(forward, reps),
        "tfgate_to_proto_from_message_ms": median_ms(forward_from_message, reps),
        "tfgate_to_proto_message_ms": median_ms(
            lambda: tensors.to_proto(tensors.from_domain("x", domain, float32, (-1,)), float32),
            reps,
        ),
        "tfgate_from_proto_ms": median_ms(lambda: back(proto), reps),
        "tfgate_from_proto_float_val_ms": median_ms(lambda: back(listed), reps),
    }


def measure_tensorflow(reps: int) -> dict[str, Any]:
    """tf.make_tensor_proto / tf.make_ndarray, in a separate process; a note when TF is absent."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.conversion_tf", str(COUNT), str(reps)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        return {"note": f"TensorFlow side failed: {done.stderr.strip()[-500:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


IMAGE = (224, 224, 3)


def rest_body() -> bytes:
    """TF Serving's row-format predict body of one float32 image (values in [0, 1))."""
    import orjson

    image = np.random.default_rng(0).random((1, *IMAGE), dtype=np.float32)
    return orjson.dumps({"instances": image}, option=orjson.OPT_SERIALIZE_NUMPY)


def rest_routes(body: bytes) -> tuple[Callable[[], bytes], Callable[[], bytes]]:
    """(tfgate's way, the json_format.ParseDict way) from ``body`` to the backend request bytes."""
    import json

    from google.protobuf import json_format

    from tfgate import dtypes, translate
    from tfgate.config import Config
    from tfgate.domain import Predict
    from tfgate.fronts.http.tfserving_json import parse_predict
    from tfgate.plans.plan import identity
    from tfgate.signatures import ModelMetadata, Signature, TensorSpec
    from tfgate.tfs.tensorflow_serving.apis import predict_pb2

    float32 = dtypes.BY_NAME["float32"]
    signature = Signature(
        "tensorflow/serving/predict",
        {"x": TensorSpec(float32, (-1, *IMAGE))},
        {"y": TensorSpec(float32, (-1, 1000))},
    )
    meta = ModelMetadata("m", 1, {"serving_default": signature})
    plan = identity(meta, "serving_default", signature)
    sel = translate.selector("m", 0, "")
    limit = Config().max_tensor_elements

    def tfgate_way() -> bytes:
        # As tfgate.fronts.http.tfserving and tfgate.inference run them for one call.
        parsed = parse_predict(body)
        request = Predict(
            sel.model,
            sel.version,
            sel.label,
            parsed.signature,
            parsed.inputs,
            size=len(body),
            unnamed=parsed.unnamed,
        )
        return plan.prepare(sel, request, limit).request.data

    def parse_dict_way() -> bytes:
        values = np.asarray(json.loads(body)["instances"], dtype=np.float32)
        tensor = {
            "dtype": "DT_FLOAT",
            "tensor_shape": {"dim": [{"size": n} for n in values.shape]},
            "float_val": values.reshape(-1).tolist(),
        }
        message = {"model_spec": {"name": "m"}, "inputs": {"x": tensor}}
        return json_format.ParseDict(message, predict_pb2.PredictRequest()).SerializeToString()

    return tfgate_way, parse_dict_way


def sent_values(data: bytes) -> Any:
    """The float32 values of input x in a serialized PredictRequest, in its shape."""
    from tfgate import tensors
    from tfgate.tfs.tensorflow_serving.apis import predict_pb2

    proto = predict_pb2.PredictRequest.FromString(data).inputs["x"]
    return tensors.from_proto("x", proto)[1]


def measure_rest(reps: int) -> dict[str, Any]:
    import orjson

    from tfgate import dtypes
    from tfgate.fronts.http.tfserving_json import parse_predict, predict_body

    body = rest_body()
    tfgate_way, parse_dict_way = rest_routes(body)
    image = np.asarray(orjson.loads(body)["instances"], dtype=np.float32)
    for way in (tfgate_way, parse_dict_way):
        if not np.array_equal(sent_values(way()), image):
            raise RuntimeError(f"{way.__name__} sends other values than the body holds")
    float32 = dtypes.BY_NAME["float32"]
    return {
        "rest_body_mb": len(body) / 1e6,
        "rest_orjson_loads_ms": median_ms(lambda: orjson.loads(body), reps),
        "rest_parse_predict_ms": median_ms(lambda: parse_predict(body), reps),
        "rest_to_backend_ms": median_ms(tfgate_way, reps),
        "rest_parse_dict_ms": median_ms(parse_dict_way, reps),
        "rest_orjson_dumps_ms": median_ms(
            lambda: orjson.dumps(image, option=orjson.OPT_SERIALIZE_NUMPY), reps
        ),
        "rest_predict_body_ms": median_ms(
            lambda: predict_body([("y", float32, image)], row_format=True), reps
        ),
    }


def measure(reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {"count": COUNT, "reps": reps, **measure_tfgate(reps)}
    out.update(measure_tensorflow(reps))
    out.update(measure_rest(reps))
    return out


def summary(conv: dict[str, Any]) -> str:
    """The REST figures of ``measure`` in one line."""
    loads, ours = conv["rest_orjson_loads_ms"], conv["rest_to_backend_ms"]
    dumps, answer = conv["rest_orjson_dumps_ms"], conv["rest_predict_body_ms"]
    return (
        f"REST JSON, 224x224x3 float32 ({conv['rest_body_mb']:.1f} MB, median of {conv['reps']}): "
        f"orjson.loads {loads:.1f} ms; tfgate to the backend request {ours:.1f} ms "
        f"({ours / loads:.2f}x; parse_predict alone {conv['rest_parse_predict_ms']:.1f} ms); "
        f"json + json_format.ParseDict {conv['rest_parse_dict_ms']:.1f} ms; the answer: "
        f"orjson.dumps {dumps:.1f} ms, predict_body {answer:.1f} ms ({answer / dumps:.2f}x)"
    )


if __name__ == "__main__":
    figures = measure_rest(9)
    print(summary({**figures, "reps": 9}))
