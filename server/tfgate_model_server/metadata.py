"""PredictionService.GetModelMetadata and ModelService.GetModelStatus.

After TF Serving's ``get_model_metadata_impl.cc`` (the only metadata field is "signature_def":
the version's whole SignatureDefMap, Any-packed) and ``get_model_status_impl.cc`` (a version
asked for, or every version, each with its state and an OK StatusProto).
"""

from __future__ import annotations

from typing import Any

from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from tfgate_model_server.errors import InvalidArgument
from tfgate_model_server.manager import ServableManager

SIGNATURE_DEF = "signature_def"


def get_model_metadata(manager: ServableManager, request: Any) -> Any:
    if not request.HasField("model_spec"):
        raise InvalidArgument("Missing ModelSpec")
    if not request.metadata_field:
        raise InvalidArgument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != SIGNATURE_DEF:
            raise InvalidArgument(f"Metadata field {field} is not supported")

    servable = manager.resolve(request.model_spec)
    signature_def_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signature_defs.items():
        signature_def_map.signature_def[key].CopyFrom(signature)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.metadata[SIGNATURE_DEF].Pack(signature_def_map)
    return response


def get_model_status(manager: ServableManager, request: Any) -> Any:
    if not request.HasField("model_spec"):
        raise InvalidArgument("Missing ModelSpec")
    spec = request.model_spec
    # Like TF Serving, only `version` narrows the answer; a version_label is ignored.
    version = int(spec.version.value) if spec.HasField("version") else None
    response = get_model_status_pb2.GetModelStatusResponse()
    for state in manager.states(str(spec.name), version):
        status = response.model_version_status.add()
        status.version = state.version
        status.state = get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
        status.status.error_code = state.error_code
        status.status.error_message = state.error_message
    return response
