"""The TF Serving messages tfgate sends or reads, built from whichever generated classes it gets.

tests/test_wire_compat.py builds them with tfgate's stubs (`load("tfgate.tfs.")`), and
tests/official_side.py builds the very same ones with the official tensorflow_serving classes
(`load("")`) in a subprocess: the two sets register the same proto names, so they never share a
process. This module imports neither.
"""

from __future__ import annotations

import importlib
import struct
from types import SimpleNamespace
from typing import Any

from google.protobuf import any_pb2, descriptor_pool, message_factory, text_format, unknown_fields
from google.protobuf.message import Message
from google.protobuf.wrappers_pb2 import Int64Value

# Attribute of the namespace `load` returns -> module path in the official layout.
MODULES = {
    "classification_pb2": "tensorflow_serving.apis.classification_pb2",
    "error_codes_pb2": "tensorflow.core.protobuf.error_codes_pb2",
    "example_pb2": "tensorflow.core.example.example_pb2",
    "feature_pb2": "tensorflow.core.example.feature_pb2",
    "get_model_metadata_pb2": "tensorflow_serving.apis.get_model_metadata_pb2",
    "get_model_status_pb2": "tensorflow_serving.apis.get_model_status_pb2",
    "input_pb2": "tensorflow_serving.apis.input_pb2",
    "meta_graph_pb2": "tensorflow.core.protobuf.meta_graph_pb2",
    "model_pb2": "tensorflow_serving.apis.model_pb2",
    "predict_pb2": "tensorflow_serving.apis.predict_pb2",
    "regression_pb2": "tensorflow_serving.apis.regression_pb2",
    "status_pb2": "tensorflow_serving.apis.status_pb2",
    "tensor_pb2": "tensorflow.core.framework.tensor_pb2",
    "tensor_shape_pb2": "tensorflow.core.framework.tensor_shape_pb2",
    "types_pb2": "tensorflow.core.framework.types_pb2",
}


def load(prefix: str) -> Any:
    """The generated modules, imported as `prefix + <official path>`."""
    return SimpleNamespace(
        **{attr: importlib.import_module(prefix + path) for attr, path in MODULES.items()}
    )


def cases(pb: Any) -> dict[str, Message]:
    """Every message to compare, by a name for the test ids."""
    spec = pb.model_pb2.ModelSpec
    versioned = spec(name="resnet", version=Int64Value(value=7), signature_name="serving_default")
    labelled = spec(name="resnet", version_label="stable", signature_name="predict_images")
    content = _tensors_in_content(pb)
    values = _tensors_in_values(pb)
    return {
        "PredictRequest-version-content": pb.predict_pb2.PredictRequest(
            model_spec=versioned, inputs=content, output_filter=["probabilities", "classes"]
        ),
        "PredictRequest-label-values": pb.predict_pb2.PredictRequest(
            model_spec=labelled, inputs=values
        ),
        "PredictRequest-latest": pb.predict_pb2.PredictRequest(
            model_spec=spec(name="iris"), inputs={"x": values["float"]}
        ),
        "PredictResponse": pb.predict_pb2.PredictResponse(
            model_spec=versioned,
            outputs={"probabilities": content["float"], "classes": values["string"]},
        ),
        "GetModelMetadataRequest": pb.get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=spec(name="resnet", version=Int64Value(value=7)),
            metadata_field=["signature_def"],
        ),
        "GetModelMetadataResponse": _metadata_response(pb, versioned),
        "GetModelStatusRequest": pb.get_model_status_pb2.GetModelStatusRequest(
            model_spec=spec(name="resnet")
        ),
        "GetModelStatusResponse": _status_response(pb),
        "ClassificationRequest-list": pb.classification_pb2.ClassificationRequest(
            model_spec=spec(name="iris", signature_name="classification"),
            input=pb.input_pb2.Input(
                example_list=pb.input_pb2.ExampleList(
                    examples=[_example(pb, 5.1), _example(pb, 6.2)]
                )
            ),
        ),
        "ClassificationRequest-context": pb.classification_pb2.ClassificationRequest(
            model_spec=spec(name="iris", version_label="canary"),
            input=pb.input_pb2.Input(
                example_list_with_context=pb.input_pb2.ExampleListWithContext(
                    examples=[_example(pb, 4.9)], context=_example(pb, 0.0)
                )
            ),
        ),
        "ClassificationResponse": pb.classification_pb2.ClassificationResponse(
            model_spec=versioned,
            result=pb.classification_pb2.ClassificationResult(
                classifications=[
                    pb.classification_pb2.Classifications(
                        classes=[
                            pb.classification_pb2.Class(label="setosa", score=0.875),
                            pb.classification_pb2.Class(label="virginica", score=0.125),
                        ]
                    ),
                    pb.classification_pb2.Classifications(),
                ]
            ),
        ),
        "RegressionRequest": pb.regression_pb2.RegressionRequest(
            model_spec=spec(name="houses", version=Int64Value(value=3)),
            input=pb.input_pb2.Input(
                example_list=pb.input_pb2.ExampleList(examples=[_example(pb, 1)])
            ),
        ),
        "RegressionResponse": pb.regression_pb2.RegressionResponse(
            model_spec=spec(name="houses", version=Int64Value(value=3), signature_name="regress"),
            result=pb.regression_pb2.RegressionResult(
                regressions=[pb.regression_pb2.Regression(value=v) for v in (1.5, -0.25, 3e38)]
            ),
        ),
    }


def _shape(pb: Any, *dims: int) -> Any:
    shape = pb.tensor_shape_pb2.TensorShapeProto
    return shape(dim=[shape.Dim(size=d) for d in dims])


# dtype name -> (DataType, struct format for tensor_content, values). half and bfloat16 carry raw
# 16-bit patterns, as TF Serving puts them in half_val: 1.0, -2.0, 65504 (max half) / 1.0, -2.0.
_NUMERIC: dict[str, tuple[str, str, list[Any]]] = {
    "float": ("DT_FLOAT", "f", [1.5, -2.25, 3.0e38, 0.0]),
    "double": ("DT_DOUBLE", "d", [1.5, -2.25, 1.0e300, 5e-324]),
    "int32": ("DT_INT32", "i", [0, -1, 2**31 - 1, -(2**31)]),
    "int64": ("DT_INT64", "q", [0, -1, 2**63 - 1, -(2**63)]),
    "int8": ("DT_INT8", "b", [0, -1, 127, -128]),
    "uint8": ("DT_UINT8", "B", [0, 1, 128, 255]),
    "bool": ("DT_BOOL", "?", [True, False, True, True]),
    "half": ("DT_HALF", "H", [0x3C00, 0xC000, 0x7BFF, 0x0000]),
    "bfloat16": ("DT_BFLOAT16", "H", [0x3F80, 0xC000, 0x7F7F, 0x0000]),
}
_VALUE_FIELD = {
    "float": "float_val",
    "double": "double_val",
    "int32": "int_val",
    "int64": "int64_val",
    "int8": "int_val",
    "uint8": "int_val",
    "bool": "bool_val",
    "half": "half_val",
    "bfloat16": "half_val",
}


def _tensors_in_content(pb: Any) -> dict[str, Any]:
    out = {}
    for name, (dtype, fmt, values) in _NUMERIC.items():
        out[name] = pb.tensor_pb2.TensorProto(
            dtype=pb.types_pb2.DataType.Value(dtype),
            tensor_shape=_shape(pb, 2, 2),
            tensor_content=struct.pack(f"<{len(values)}{fmt}", *values),
        )
    return out


def _tensors_in_values(pb: Any) -> dict[str, Any]:
    out = {}
    for name, (dtype, _, values) in _NUMERIC.items():
        out[name] = pb.tensor_pb2.TensorProto(
            dtype=pb.types_pb2.DataType.Value(dtype),
            tensor_shape=_shape(pb, 4),
            **{_VALUE_FIELD[name]: values},
        )
    out["string"] = pb.tensor_pb2.TensorProto(
        dtype=pb.types_pb2.DT_STRING,
        tensor_shape=_shape(pb, 3, 1),
        string_val=[b"caf\xc3\xa9", b"", b"\xff\x00 not utf-8"],
    )
    out["scalar"] = pb.tensor_pb2.TensorProto(
        dtype=pb.types_pb2.DT_FLOAT, tensor_shape=_shape(pb), float_val=[2.5]
    )
    return out


def _metadata_response(pb: Any, model_spec: Any) -> Any:
    mg = pb.meta_graph_pb2
    unknown_rank = pb.tensor_shape_pb2.TensorShapeProto(unknown_rank=True)
    signatures = pb.get_model_metadata_pb2.SignatureDefMap(
        signature_def={
            "serving_default": mg.SignatureDef(
                inputs={
                    "images": mg.TensorInfo(
                        name="serving_default_images:0",
                        dtype=pb.types_pb2.DT_FLOAT,
                        tensor_shape=_shape(pb, -1, 28, 28, 1),
                    ),
                    "tags": mg.TensorInfo(
                        name="serving_default_tags:0",
                        dtype=pb.types_pb2.DT_STRING,
                        tensor_shape=unknown_rank,
                    ),
                },
                outputs={
                    "probabilities": mg.TensorInfo(
                        name="StatefulPartitionedCall:0",
                        dtype=pb.types_pb2.DT_FLOAT,
                        tensor_shape=_shape(pb, -1, 10),
                    ),
                    "count": mg.TensorInfo(
                        name="StatefulPartitionedCall:1",
                        dtype=pb.types_pb2.DT_INT64,
                        tensor_shape=_shape(pb),
                    ),
                },
                method_name="tensorflow/serving/predict",
            ),
            "__saved_model_init_op": mg.SignatureDef(
                outputs={
                    "__saved_model_init_op": mg.TensorInfo(name="NoOp", tensor_shape=unknown_rank)
                }
            ),
        }
    )
    packed = any_pb2.Any()
    packed.Pack(signatures, deterministic=True)
    return pb.get_model_metadata_pb2.GetModelMetadataResponse(
        model_spec=model_spec, metadata={"signature_def": packed}
    )


def _status_response(pb: Any) -> Any:
    status = pb.get_model_status_pb2.ModelVersionStatus
    code = pb.error_codes_pb2.Code
    versions = [
        status(version=1, state=status.UNKNOWN),
        status(version=2, state=status.START, status=pb.status_pb2.StatusProto()),
        status(version=3, state=status.LOADING),
        status(
            version=4,
            state=status.AVAILABLE,
            status=pb.status_pb2.StatusProto(error_code=code.Value("OK"), error_message=""),
        ),
        status(version=5, state=status.UNLOADING),
        status(
            version=6,
            state=status.END,
            status=pb.status_pb2.StatusProto(
                error_code=code.Value("NOT_FOUND"), error_message="Could not find base path"
            ),
        ),
        status(
            version=7,
            state=status.END,
            status=pb.status_pb2.StatusProto(
                error_code=code.Value("UNKNOWN"), error_message="Loading servable failed: é"
            ),
        ),
    ]
    return pb.get_model_status_pb2.GetModelStatusResponse(model_version_status=versions)


def _example(pb: Any, x: float) -> Any:
    f = pb.feature_pb2
    return pb.example_pb2.Example(
        features=f.Features(
            feature={
                "sepal_length": f.Feature(float_list=f.FloatList(value=[x])),
                "ids": f.Feature(int64_list=f.Int64List(value=[1, -2, 2**40])),
                "kind": f.Feature(bytes_list=f.BytesList(value=[b"setosa", b"\x00\xff"])),
            }
        )
    )


# -- what both sides report about a message -----------------------------------------------------


def serialize(message: Message) -> bytes:
    """Map entries sorted by key, so equal messages give equal bytes."""
    return message.SerializeToString(deterministic=True)


def text(message: Message) -> str:
    """text_format, with Any contents expanded through this process's descriptor pool."""
    return text_format.MessageToString(message, descriptor_pool=descriptor_pool.Default())


def message_class(full_name: str) -> type[Message]:
    return message_factory.GetMessageClass(
        descriptor_pool.Default().FindMessageTypeByName(full_name)
    )


def unknown_field_paths(message: Message, path: str = "") -> list[str]:
    """Where `message` holds fields its class does not know, Any contents included."""
    here = path or message.DESCRIPTOR.full_name
    unknown = unknown_fields.UnknownFieldSet(message)
    found = [f"{here}: field {unknown[i].field_number}" for i in range(len(unknown))]
    if message.DESCRIPTOR.full_name == "google.protobuf.Any":
        assert isinstance(message, any_pb2.Any)
        inner = message_class(message.TypeName())()
        message.Unpack(inner)
        return found + unknown_field_paths(inner, f"{here}[{message.TypeName()}]")
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for key, item in value.items():
                    found += unknown_field_paths(item, f"{here}.{field.name}[{key!r}]")
        elif field.is_repeated:
            for i, item in enumerate(value):
                found += unknown_field_paths(item, f"{here}.{field.name}[{i}]")
        else:
            found += unknown_field_paths(value, f"{here}.{field.name}")
    return found
