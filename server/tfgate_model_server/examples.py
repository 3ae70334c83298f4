"""PredictionService.Classify and Regress: signatures fed serialized tf.Examples.

After TF Serving's ``classifier.cc``, ``regressor.cc`` and ``util.cc``: the request's Input
becomes a 1-D DT_STRING tensor of serialized Examples (with ``example_list_with_context``,
the context's bytes go before each example's, which protobuf parses as a merge), fed to the
signature's "inputs"; the outputs are checked and copied into the result. As in TF Serving
without ``--enable_signature_method_name_check``, a signature's method_name is not checked.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from tensorflow_serving.apis import classification_pb2, regression_pb2

from tfgate import dtypes
from tfgate_model_server.errors import InvalidArgument
from tfgate_model_server.manager import ServableManager
from tfgate_model_server.predict import DEFAULT_SIGNATURE, make_model_spec
from tfgate_model_server.servable import Feed, Servable
from tfgate_model_server.tensors import dtype_enum, dtype_name

CLASSIFY_INPUTS = "inputs"
CLASSIFY_CLASSES = "classes"
CLASSIFY_SCORES = "scores"
REGRESS_INPUTS = "inputs"
REGRESS_OUTPUTS = "outputs"

_DT_FLOAT = dtypes.BY_NAME["float32"].enum
_DT_STRING = dtypes.BY_NAME["string"].enum


def classify(manager: ServableManager, request: Any, *, timeout: float | None = None) -> Any:
    servable = manager.resolve_request(request)
    signature = _signature(servable, request.model_spec)
    input_name, output_names = classification_tensors(signature)
    response = classification_pb2.ClassificationResponse()
    make_model_spec(
        response.model_spec,
        request.model_spec.name,
        servable.version,
        request.model_spec.signature_name,
    )
    examples = serialized_examples(request.input)
    values = servable.run([Feed(input_name, examples)], output_names, timeout)
    by_name = dict(zip(output_names, values, strict=True))

    def output(alias: str) -> npt.NDArray[Any] | None:
        info = signature.outputs.get(alias)
        return None if info is None else by_name[info.name]

    fill_classifications(
        response.result, len(examples), output(CLASSIFY_CLASSES), output(CLASSIFY_SCORES)
    )
    return response


def regress(manager: ServableManager, request: Any, *, timeout: float | None = None) -> Any:
    servable = manager.resolve_request(request)
    signature = _signature(servable, request.model_spec)
    input_name, output_name = regression_tensors(signature)
    response = regression_pb2.RegressionResponse()
    make_model_spec(
        response.model_spec,
        request.model_spec.name,
        servable.version,
        request.model_spec.signature_name,
    )
    examples = serialized_examples(request.input)
    (output,) = servable.run([Feed(input_name, examples)], [output_name], timeout)
    fill_regressions(response.result, len(examples), output)
    return response


def serialized_examples(request_input: Any) -> npt.NDArray[Any]:
    """The Input as a 1-D array of serialized tf.Examples (InputToSerializedExampleTensor)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        blobs = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        context = with_context.context.SerializeToString()
        blobs = [context + e.SerializeToString() for e in with_context.examples]
    else:
        blobs = []
    if not blobs:
        raise InvalidArgument("Input is empty.")
    examples = np.empty(len(blobs), dtype=object)
    examples[:] = blobs
    return examples


def _signature(servable: Servable, model_spec: Any) -> Any:
    name = model_spec.signature_name or DEFAULT_SIGNATURE
    signature = servable.signature_defs.get(name)
    if signature is None:
        raise InvalidArgument(f"No signature was found with the name: {name}")
    return signature


def classification_tensors(signature: Any) -> tuple[str, list[str]]:
    if len(signature.inputs) != 1:
        raise InvalidArgument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise InvalidArgument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if CLASSIFY_INPUTS not in signature.inputs:
        raise InvalidArgument(f"No classification inputs found in SignatureDef: {signature}")
    outputs = [
        signature.outputs[k].name
        for k in (CLASSIFY_CLASSES, CLASSIFY_SCORES)
        if k in signature.outputs
    ]
    if not outputs:
        raise InvalidArgument(
            "Expected classification signature outputs to contain at least one of "
            f'"{CLASSIFY_CLASSES}" or "{CLASSIFY_SCORES}". Signature was: {signature}'
        )
    return signature.inputs[CLASSIFY_INPUTS].name, outputs


def regression_tensors(signature: Any) -> tuple[str, str]:
    if len(signature.inputs) != 1:
        raise InvalidArgument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise InvalidArgument("Expected one output Tensor.")
    if REGRESS_INPUTS not in signature.inputs:
        raise InvalidArgument(f"No regression inputs found in SignatureDef: {signature}")
    if REGRESS_OUTPUTS not in signature.outputs:
        raise InvalidArgument(f"No regression outputs found in SignatureDef: {signature}")
    return signature.inputs[REGRESS_INPUTS].name, signature.outputs[REGRESS_OUTPUTS].name


def _shape(array: npt.NDArray[Any]) -> str:
    """TensorShape::DebugString()."""
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def _type_name(enum: int) -> str:
    """DataType_Name()."""
    return "DT_" + dtype_name(enum).upper()


def _check_matrix(array: npt.NDArray[Any], what: str, dtype: int, num_examples: int) -> None:
    if array.ndim != 2:
        raise InvalidArgument(
            f"Expected Tensor shape: [batch_size num_classes] but got {_shape(array)}"
        )
    if dtype_enum(array) != dtype:
        raise InvalidArgument(
            f"Expected {what} Tensor of {_type_name(dtype)}. Got: {_type_name(dtype_enum(array))}"
        )
    if array.shape[0] != num_examples:
        raise InvalidArgument(
            f"Expected {what} output batch size of {num_examples}. Got: {array.shape[0]}"
        )


def fill_classifications(
    result: Any,
    num_examples: int,
    classes: npt.NDArray[Any] | None,
    scores: npt.NDArray[Any] | None,
) -> None:
    if classes is not None:
        _check_matrix(classes, "classes", _DT_STRING, num_examples)
    if scores is not None:
        _check_matrix(scores, "scores", _DT_FLOAT, num_examples)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise InvalidArgument(
            "Tensors class and score should match in dim_size(1). Got "
            f"{classes.shape[1]} vs. {scores.shape[1]}"
        )
    reference = classes if classes is not None else scores
    num_classes = reference.shape[1] if reference is not None else 0
    for i in range(num_examples):
        classifications = result.classifications.add()
        for c in range(num_classes):
            entry = classifications.classes.add()
            if classes is not None:
                label = classes[i, c]
                entry.label = (
                    label.decode("utf-8", "replace") if isinstance(label, bytes) else label
                )
            if scores is not None:
                entry.score = float(scores[i, c])


def fill_regressions(result: Any, num_examples: int, output: npt.NDArray[Any]) -> None:
    if not (output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)):
        raise InvalidArgument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but "
            f"got {_shape(output)}"
        )
    if output.shape[0] != num_examples:
        raise InvalidArgument(
            "Input batch size did not match output batch size: "
            f"{num_examples} vs. {output.shape[0]}"
        )
    if dtype_enum(output) != _DT_FLOAT:
        raise InvalidArgument(
            f"Expected output Tensor of DT_FLOAT.  Got: {_type_name(dtype_enum(output))}"
        )
    for value in output.reshape(-1):
        result.regressions.add().value = float(value)
