"""Tensor conversion cost: 1,000,000 float32 from a tfgate.v1.Tensor to a TensorProto and back.

tfgate's converter (tfgate.tensors) against the floor, a plain copy of the same 4 MB with numpy,
and against TensorFlow's ``tf.make_tensor_proto`` / ``tf.make_ndarray``. TensorFlow runs in a
process of its own (bench/conversion_tf.py): it registers the same proto names as tfgate's
stubs, so the two never share a process. Each figure is the median of several repetitions.
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


def measure(reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {"count": COUNT, "reps": reps, **measure_tfgate(reps)}
    out.update(measure_tensorflow(reps))
    return out
