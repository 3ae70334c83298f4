"""PredictionService.Predict, after TF Serving's ``predict_util.cc`` and TensorFlow's
``saved_model::GetInputValues``: the same checks, in the same order, with the same messages.
"""

from __future__ import annotations

from typing import Any

from tensorflow_serving.apis import predict_pb2

from tfgate_model_server.errors import FailedPrecondition, InvalidArgument
from tfgate_model_server.manager import ServableManager
from tfgate_model_server.servable import Feed, Servable
from tfgate_model_server.tensors import TensorError, fill_proto, to_ndarray

DEFAULT_SIGNATURE = "serving_default"


def make_model_spec(spec: Any, name: str, version: int, signature_name: str | None = None) -> None:
    """Fills a response's model_spec (MakeModelSpec)."""
    spec.Clear()
    spec.name = name
    if signature_name is not None:
        spec.signature_name = signature_name or DEFAULT_SIGNATURE
    spec.version.value = version


def predict(
    manager: ServableManager,
    request: Any,
    *,
    as_tensor_content: bool = False,
    timeout: float | None = None,
) -> Any:
    servable = manager.resolve_request(request)
    return run_predict(servable, request, as_tensor_content=as_tensor_content, timeout=timeout)


def run_predict(
    servable: Servable, request: Any, *, as_tensor_content: bool, timeout: float | None
) -> Any:
    signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature = servable.signature_defs.get(signature_name)
    if signature is None:
        raise FailedPrecondition(f'Serving signature key "{signature_name}" not found.')

    response = predict_pb2.PredictResponse()
    make_model_spec(response.model_spec, request.model_spec.name, servable.version, signature_name)

    _verify_inputs_size(signature, request.inputs)
    feeds = _input_values(signature, request.inputs)
    aliases, fetches = _outputs(signature, list(request.output_filter))

    values = servable.run(feeds, fetches, timeout)
    for alias, value in zip(aliases, values, strict=True):
        fill_proto(value, response.outputs[alias], as_content=as_tensor_content)
    return response


def _verify_inputs_size(signature: Any, inputs: Any) -> None:
    sent, expected = set(inputs), set(signature.inputs)
    if len(sent) > len(expected) or (len(sent) < len(expected) and not signature.defaults):
        raise InvalidArgument(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{_join(sent)}}}) != len({{{_join(expected)}}}). "
            f"Sent extra: {{{_join(sent - expected)}}}. "
            f"Missing but required: {{{_join(expected - sent)}}}."
        )


def _input_values(signature: Any, inputs: Any) -> list[Feed]:
    feeds: list[Feed] = []
    used: set[str] = set()
    for alias in sorted(signature.inputs):
        feed_name = signature.inputs[alias].name
        if alias in inputs:
            proto = inputs[alias]
            used.add(alias)
        elif alias in signature.defaults:
            proto = signature.defaults[alias]
        else:
            raise InvalidArgument(
                f"Signature input alias: {alias}(feed name: {feed_name}) not found in request "
                f"and no default value provided. Inputs expected to be in the request "
                f"{{{_join(inputs)}}}, or default input alias set: {_join(signature.defaults)}"
            )
        try:
            value = to_ndarray(proto)
        except TensorError as exc:
            raise InvalidArgument(f"tensor parsing error: {alias}") from exc
        feeds.append(Feed(feed_name, value))
    if inputs and len(used) != len(inputs):
        raise InvalidArgument(
            f"Inputs contains invalid name. Used request inputs: {_join(used)}, "
            f"request input: {_join(inputs)}"
        )
    return feeds


def _outputs(signature: Any, output_filter: list[str]) -> tuple[list[str], list[str]]:
    """The aliases to answer and their tensor names: the filter's, or every output."""
    aliases: list[str] = []
    for alias in output_filter:
        if alias not in signature.outputs:
            raise InvalidArgument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {{{_join(signature.outputs)}}}."
            )
        if alias in aliases:
            raise InvalidArgument(f"duplicate output tensor alias: {alias}")
        aliases.append(alias)
    if not aliases:
        aliases = sorted(signature.outputs)
    return aliases, [signature.outputs[a].name for a in aliases]


def _join(names: Any) -> str:
    """A std::set<string> joined with "," (sorted)."""
    return ",".join(sorted(names))
