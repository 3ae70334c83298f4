"""A TF-Serving-compatible backend for tests, in-process, with fault injection.

It speaks tensorflow.serving.PredictionService (Predict, GetModelMetadata) and ModelService
(GetModelStatus) with TF Serving's version resolution, codes and messages, but runs numpy
functions instead of SavedModels. It decodes tensors on its own (not with tfgate.tensors), so
tests compare tfgate against an independent reading. Tests can queue failures, slow calls
down, answer with crafted bytes (``answer_next``: malformed answers TF Serving would never
send), and read call counts, concurrency and cancellations.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from tfgate.tfs.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tfgate.tfs.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

Arrays = dict[str, np.ndarray]

NUMPY_OF: dict[Any, Any] = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_INT8: np.int8,
    types_pb2.DT_INT16: np.int16,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_UINT16: np.uint16,
    types_pb2.DT_UINT32: np.uint32,
    types_pb2.DT_UINT64: np.uint64,
    types_pb2.DT_BOOL: np.bool_,
    types_pb2.DT_HALF: np.float16,
    types_pb2.DT_BFLOAT16: np.uint16,  # bit patterns
}


@dataclass
class Sig:
    inputs: dict[str, tuple[int, tuple[int, ...] | None]]  # alias -> (dtype, shape)
    outputs: dict[str, tuple[int, tuple[int, ...] | None]]
    fn: Callable[[Arrays], Arrays]
    method: str = "tensorflow/serving/predict"


@dataclass
class Version:
    signatures: dict[str, Sig]
    state: int = get_model_status_pb2.ModelVersionStatus.AVAILABLE


@dataclass
class Model:
    versions: dict[int, Version]
    labels: dict[str, int] = field(default_factory=dict)


def half_plus(offset: float) -> Sig:
    return Sig(
        inputs={"x": (types_pb2.DT_FLOAT, (-1,))},
        outputs={"y": (types_pb2.DT_FLOAT, (-1,))},
        fn=lambda a: {"y": (a["x"] * 0.5 + offset).astype(np.float32)},
    )


ECHO_DTYPES = {
    "f32": types_pb2.DT_FLOAT,
    "f64": types_pb2.DT_DOUBLE,
    "f16": types_pb2.DT_HALF,
    "bf16": types_pb2.DT_BFLOAT16,
    "i8": types_pb2.DT_INT8,
    "u8": types_pb2.DT_UINT8,
    "i16": types_pb2.DT_INT16,
    "u16": types_pb2.DT_UINT16,
    "i32": types_pb2.DT_INT32,
    "u32": types_pb2.DT_UINT32,
    "i64": types_pb2.DT_INT64,
    "u64": types_pb2.DT_UINT64,
    "b": types_pb2.DT_BOOL,
    "s": types_pb2.DT_STRING,
}


def echo() -> Sig:
    """One input per dtype (unknown rank), each returned unchanged as the output of that name."""
    specs = {name: (dt, None) for name, dt in ECHO_DTYPES.items()}
    return Sig(inputs=dict(specs), outputs=dict(specs), fn=dict)


def default_models() -> dict[str, Model]:
    image = Sig(
        inputs={"image": (types_pb2.DT_FLOAT, (-1, 2, 2))},
        outputs={"total": (types_pb2.DT_FLOAT, (-1,))},
        fn=lambda a: {"total": a["image"].reshape(len(a["image"]), -1).sum(axis=1)},
    )
    two = Sig(
        inputs={"a": (types_pb2.DT_FLOAT, (-1,)), "b": (types_pb2.DT_INT64, (-1,))},
        outputs={"sum": (types_pb2.DT_FLOAT, (-1,)), "prod": (types_pb2.DT_FLOAT, (-1,))},
        fn=lambda a: {"sum": a["a"] + a["b"], "prod": a["a"] * a["b"]},
    )
    return {
        "half_plus_two": Model(
            versions={
                1: Version({"serving_default": half_plus(2.0)}),
                2: Version({"serving_default": half_plus(3.0)}),
            },
            labels={"stable": 1, "canary": 2},
        ),
        "echo": Model(versions={1: Version({"serving_default": echo()})}),
        "shapes": Model(versions={3: Version({"serving_default": image, "two": two})}),
    }


# The *_val list of each dtype that has its own; the narrow integers share int_val.
VAL_FIELD: dict[Any, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
}


def decode(proto: tensor_pb2.TensorProto) -> np.ndarray:
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    size = int(np.prod(shape))
    if proto.dtype == types_pb2.DT_STRING:
        values: Any = np.array(list(proto.string_val), dtype=object)
    elif proto.tensor_content:
        values = np.frombuffer(proto.tensor_content, dtype=NUMPY_OF[proto.dtype])
    elif proto.dtype in (types_pb2.DT_HALF, types_pb2.DT_BFLOAT16):
        values = np.array(proto.half_val, dtype=np.uint16).view(NUMPY_OF[proto.dtype])
    else:
        field_name = VAL_FIELD.get(proto.dtype, "int_val")
        values = np.array(getattr(proto, field_name), dtype=NUMPY_OF[proto.dtype])
    if len(values) == 1 and size > 1:
        values = np.repeat(values, size)
    return values.reshape(shape)


def encode(array: np.ndarray, dtype: Any, tensor_content: bool) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(
        dtype=dtype,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]
        ),
    )
    flat = array.ravel()
    if dtype == types_pb2.DT_STRING:
        proto.string_val.extend(flat.tolist())
    elif tensor_content:
        proto.tensor_content = np.ascontiguousarray(flat, dtype=NUMPY_OF[dtype]).tobytes()
    elif dtype in (types_pb2.DT_HALF, types_pb2.DT_BFLOAT16):
        proto.half_val.extend(flat.view(np.uint16).astype(np.int32).tolist())
    else:
        getattr(proto, VAL_FIELD.get(dtype, "int_val")).extend(flat.tolist())
    return proto


class _Handlers:
    """Collects the method handlers a generated ``add_*_to_server`` function registers."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        self.services[service] = handlers


def _bytes_or(serialize: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """A response serializer that sends ``bytes`` as they are: crafted answers."""
    return lambda message: message if isinstance(message, bytes) else serialize(message)


def _register(server: grpc.aio.Server, servicer: Any) -> None:
    """The servicer's PredictionService and ModelService, whose methods may answer raw bytes."""
    found = _Handlers()
    collect: Any = found  # stands in for the server the generated functions expect
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, collect)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, collect)
    for service, handlers in found.services.items():
        wrapped: dict[str, grpc.RpcMethodHandler] = {}
        for name, handler in handlers.items():
            assert handler.unary_unary is not None and handler.response_serializer is not None
            wrapped[name] = grpc.unary_unary_rpc_method_handler(
                handler.unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=_bytes_or(handler.response_serializer),
            )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
        server.add_registered_method_handlers(service, wrapped)


class Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FakeTFServing(
    prediction_service_pb2_grpc.PredictionServiceServicer,
    model_service_pb2_grpc.ModelServiceServicer,
):
    def __init__(self, models: dict[str, Model] | None = None, *, tensor_content: bool = False):
        self.models = default_models() if models is None else models
        self.tensor_content = tensor_content
        self.calls: collections.Counter[str] = collections.Counter()
        # The x-request-id metadata of the latest calls (None: none sent), in arrival order.
        self.request_ids: collections.deque[str | None] = collections.deque(maxlen=1000)
        # The traceparent and tracestate metadata of the latest calls (None: not sent).
        self.trace_headers: collections.deque[tuple[str | None, str | None]] = collections.deque(
            maxlen=1000
        )
        self.faults: collections.deque[tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]] = (
            collections.deque()
        )
        # Method name -> answers to send instead of computing one, as serialized bytes.
        self.crafted: collections.defaultdict[str, collections.deque[bytes]] = (
            collections.defaultdict(collections.deque)
        )
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0
        self.completed = 0
        self.server: grpc.aio.Server | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, port: int = 0, credentials: grpc.ServerCredentials | None = None) -> int:
        """Serves on 127.0.0.1:``port``; TLS with ``credentials``, else plain text."""
        self.server = grpc.aio.server()
        _register(self.server, self)
        address = f"127.0.0.1:{port}"
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
        await self.server.start()
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def fail_next(
        self,
        code: grpc.StatusCode,
        count: int = 1,
        message: str = "injected",
        trailers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.faults.extend([(code, message, trailers)] * count)

    def answer_next(self, method: str, answer: bytes | Any, count: int = 1) -> None:
        """The next ``count`` calls of ``method`` ("Predict", "GetModelMetadata", ...) answer
        ``answer``: bytes sent as they are (however malformed), or a message, serialized."""
        data = answer if isinstance(answer, bytes) else answer.SerializeToString()
        self.crafted[method].extend([data] * count)

    # -- TF Serving semantics ----------------------------------------------------------------
    def _resolve(self, spec: Any) -> tuple[str, int, Version]:
        model = self.models.get(spec.name)
        if spec.HasField("version"):
            wanted = f"Specific({spec.name}, {spec.version.value})"
            if model is None or spec.version.value not in model.versions:
                raise Abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {wanted}")
            return spec.name, spec.version.value, model.versions[spec.version.value]
        if spec.version_label:
            if model is None:
                raise Abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"Servable not found for request: Latest({spec.name})",
                )
            if spec.version_label not in model.labels:
                raise Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Unrecognized servable version label: {spec.version_label}",
                )
            version = model.labels[spec.version_label]
            return spec.name, version, model.versions[version]
        if model is None or not model.versions:
            raise Abort(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({spec.name})"
            )
        version = max(model.versions)
        return spec.name, version, model.versions[version]

    async def _enter(self, method: str, context: grpc.aio.ServicerContext) -> None:
        self.calls[method] += 1
        metadata = {k: v for k, v in context.invocation_metadata() or ()}
        sent = metadata.get("x-request-id")
        self.request_ids.append(sent if isinstance(sent, str) else None)
        parent, state = metadata.get("traceparent"), metadata.get("tracestate")
        self.trace_headers.append(
            (
                parent if isinstance(parent, str) else None,
                state if isinstance(state, str) else None,
            )
        )
        if self.faults:
            code, message, trailers = self.faults.popleft()
            await context.abort(code, message, trailers)

    async def _run(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        body: Callable[[], Any],
        probe: bool = False,
    ):
        """Runs one call; ``probe`` calls (tfgate's health checks) skip the faults and counters."""
        if probe:
            return body()
        await self._enter(method, context)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.crafted[method]:
                return self.crafted[method].popleft()
            result = body()
            self.completed += 1
            return result
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        except Abort as exc:
            await context.abort(exc.code, exc.message)
        finally:
            self.in_flight -= 1

    async def _unimplemented(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not served by this test backend")

    Classify = Regress = MultiInference = HandleReloadConfigRequest = _unimplemented

    async def Predict(self, request: predict_pb2.PredictRequest, context):
        return await self._run("Predict", context, lambda: self._predict(request))

    def _predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        name, version, servable = self._resolve(request.model_spec)
        key = request.model_spec.signature_name or "serving_default"
        sig = servable.signatures.get(key)
        if sig is None:
            raise Abort(
                grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.'
            )
        if set(request.inputs) != set(sig.inputs):
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "input size does not match signature: "
                f"{len(request.inputs)}!={len(sig.inputs)} "
                f"len({{{','.join(sorted(request.inputs))}}}) "
                f"!= len({{{','.join(sorted(sig.inputs))}}})",
            )
        arrays = {}
        for alias, proto in request.inputs.items():
            if proto.dtype != sig.inputs[alias][0]:
                raise Abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Expects arg {alias} to be other dtype"
                )
            arrays[alias] = decode(proto)
        outputs = sig.fn(arrays)
        wanted = list(request.output_filter) or list(sig.outputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = name
        response.model_spec.version.value = version
        response.model_spec.signature_name = key
        for alias in wanted:
            if alias not in sig.outputs:
                raise Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"output tensor alias not found in signature: {alias}",
                )
            dtype = sig.outputs[alias][0]
            array = np.asarray(outputs[alias])
            if dtype != types_pb2.DT_STRING and dtype in NUMPY_OF and array.dtype != object:
                array = array.astype(NUMPY_OF[dtype]) if dtype != types_pb2.DT_BFLOAT16 else array
            response.outputs[alias].CopyFrom(encode(array, dtype, self.tensor_content))
        return response

    async def GetModelMetadata(self, request, context):
        return await self._run("GetModelMetadata", context, lambda: self._metadata(request))

    def _metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest):
        name, version, servable = self._resolve(request.model_spec)
        if list(request.metadata_field) != ["signature_def"]:
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Metadata field signature_def is the only supported field",
            )
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in servable.signatures.items():
            definition = sig_map.signature_def[key]
            definition.method_name = sig.method
            for side, specs in (("inputs", sig.inputs), ("outputs", sig.outputs)):
                for alias, (dtype, shape) in specs.items():
                    info = getattr(definition, side)[alias]
                    info.name = f"{alias}:0"
                    info.dtype = dtype
                    if shape is None:
                        info.tensor_shape.unknown_rank = True
                    else:
                        info.tensor_shape.SetInParent()  # present even for a scalar, as TF's
                        for d in shape:
                            info.tensor_shape.dim.add(size=d)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = version
        response.metadata["signature_def"].Pack(sig_map)
        return response

    async def GetModelStatus(self, request, context):
        probe = not request.model_spec.name
        return await self._run("GetModelStatus", context, lambda: self._status(request), probe)

    def _status(self, request: get_model_status_pb2.GetModelStatusRequest):
        if not request.model_spec.name:
            return get_model_status_pb2.GetModelStatusResponse()
        model = self.models.get(request.model_spec.name)
        if model is None:
            raise Abort(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find any versions of model {request.model_spec.name}",
            )
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, servable in sorted(model.versions.items()):
            item = response.model_version_status.add(version=version, state=servable.state)
            item.status.error_code = 0  # type: ignore[assignment]
        return response


async def _serve_forever(port: int, delay: float) -> None:
    fake = FakeTFServing()
    fake.delay = delay
    bound = await fake.start(port)
    print(f"fake-tfserving listening on 127.0.0.1:{bound}", flush=True)
    assert fake.server is not None
    await fake.server.wait_for_termination()


def main() -> None:
    """``python -m tests.fake_tfserving --port N``: the fake as a process tests can kill."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(_serve_forever(args.port, args.delay))


if __name__ == "__main__":
    main()
