"""PredictionService.MultiInference: several Classify and Regress tasks over one Input.

After TF Serving's ``multi_inference.cc`` and ``multi_inference_helper.cc``: the first task's
ModelSpec picks the servable; every task must name that model and a different signature, and
say by its method_name whether it classifies or regresses (the signature's own method_name is
not checked, as without ``--enable_signature_method_name_check``). The serialized Examples are
fed once to every task's input tensor in one session run, and each task's outputs are checked
and copied as Classify and Regress do.
"""

from __future__ import annotations

from typing import Any

import numpy.typing as npt
from tensorflow_serving.apis import inference_pb2, model_pb2

from tfgate_model_server.errors import InvalidArgument, Unimplemented
from tfgate_model_server.examples import (
    CLASSIFY_CLASSES,
    CLASSIFY_SCORES,
    REGRESS_OUTPUTS,
    classification_tensors,
    fill_classifications,
    fill_regressions,
    regression_tensors,
    serialized_examples,
)
from tfgate_model_server.manager import ServableManager
from tfgate_model_server.predict import DEFAULT_SIGNATURE, make_model_spec
from tfgate_model_server.servable import Feed

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def multi_inference(manager: ServableManager, request: Any, *, timeout: float | None = None) -> Any:
    tasks = list(request.tasks)
    first = tasks[0].model_spec if tasks and tasks[0].HasField("model_spec") else None
    servable = manager.resolve(first if first is not None else model_pb2.ModelSpec())

    model_name = ""
    seen: set[str] = set()
    inputs: set[str] = set()
    outputs: set[str] = set()
    signatures = []
    for task in tasks:
        name = str(task.model_spec.name)
        if not name:
            raise InvalidArgument("Found ModelSpec with an empty model name.")
        if not model_name:
            model_name = name
        elif name != model_name:
            raise InvalidArgument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        signature_name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if signature_name in seen:
            raise InvalidArgument(f"Duplicate evaluation of signature: {signature_name}")
        seen.add(signature_name)
        signature = servable.signature_defs.get(signature_name)
        if signature is None:
            raise InvalidArgument(f"Requested signature not found in model graph: {signature_name}")
        if task.method_name == CLASSIFY_METHOD:
            input_name, output_names = classification_tensors(signature)
        elif task.method_name == REGRESS_METHOD:
            input_name, output_name = regression_tensors(signature)
            output_names = [output_name]
        else:
            raise Unimplemented(f"Unsupported signature method_name: {task.method_name}")
        inputs.add(input_name)
        outputs.update(output_names)
        signatures.append(signature)

    examples = serialized_examples(request.input)
    fetches = sorted(outputs)
    feeds = [Feed(name, examples) for name in sorted(inputs)]
    by_name = dict(zip(fetches, servable.run(feeds, fetches, timeout), strict=True))

    response = inference_pb2.MultiInferenceResponse()
    for task, signature in zip(tasks, signatures, strict=True):
        result = response.results.add()
        if task.method_name == CLASSIFY_METHOD:
            classes = _output(signature, CLASSIFY_CLASSES, by_name)
            scores = _output(signature, CLASSIFY_SCORES, by_name)
            fill_classifications(result.classification_result, len(examples), classes, scores)
        else:
            output = by_name[signature.outputs[REGRESS_OUTPUTS].name]
            fill_regressions(result.regression_result, len(examples), output)
        make_model_spec(
            result.model_spec,
            task.model_spec.name,
            servable.version,
            task.model_spec.signature_name,
        )
    return response


def _output(
    signature: Any, alias: str, by_name: dict[str, npt.NDArray[Any]]
) -> npt.NDArray[Any] | None:
    info = signature.outputs.get(alias)
    return None if info is None else by_name[info.name]
