"""TF Serving's own test expectations hold for the local model server and for tfgate before it.

Every case of tests/conformance_cases.py runs against two targets: ``tfgate model-server`` over
the models scripts/export_models.py --conformance builds, and ``tfgate serve`` (default
settings) forwarding TF Serving's API to that model server. Requests and answers are TF
Serving's messages, through tfgate's TF Serving stubs.

Where each case comes from (files of tensorflow/serving, tests by name):

- tensorflow_model_server_test.py: testGetModelStatus, testGetModelMetadata, testClassify,
  testClassifyTf2, testRegress, testRegressTf2, testMultiInference, testMultiInferenceTf2,
  testPredictSavedModel, testGoodModelConfig, testBadModelConfig,
  test_tf_saved_model_save, test_tf_saved_model_save_multiple_signatures; the state of
  testGetStatusREST.
- predict_impl_test.cc: MissingOrEmptyModelSpec, EmptyInputList,
  InputTensorsDontMatchModelSpecInputs, OutputFiltersDontMatchModelSpecOutputs,
  InputTensorsHaveWrongType, PredictionSuccess, PredictionWithNamedRegressionSignature,
  PredictionWithNamedClassificationSignature, PredictionWithCustomizedSignatures (begun with
  reset_counter: the two targets share one counter).
- classification_service_test.cc, regression_service_test.cc: InvalidModelSpec,
  InvalidSignature, ClassificationSuccess, RegressionSuccess.
- multi_inference_test.cc, on the TF1 and the TF2 model: MissingInputTest,
  UndefinedSignatureTest, InconsistentModelSpecsInRequestTest,
  EvaluateDuplicateSignaturesTest, UsupportedSignatureTypeTest, ValidSingleSignatureTest,
  MultipleValidRegressSignaturesTest, RegressAndClassifySignaturesTest.
- get_model_status_impl_test.cc: MissingOrEmptyModelSpecFailure, InvalidModelNameFailure,
  InvalidModelVersionFailure, AllVersionsSuccess, SingleVersionSuccess.
- get_model_metadata_impl_test.cc: EmptyOrInvalidMetadataFieldList, MissingOrEmptyModelSpec,
  ReturnsSignaturesForValidModel.
- server_core_test.cc: ModelSpecMultipleVersionsAvailable (latest, version, labels, an
  unknown label).

Left out: what needs reloading, other platforms (TF Lite), REST (tests/test_http_tfserving.py
covers tfgate's), Unix sockets, channel arguments, profiling, batching and Keras models.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import text_format

from tests.conformance_cases import CASES, Answer, Call, Case, Check, Error, Fields
from tests.model_server_fixtures import Conformance, conformance, run_model_server  # noqa: F401
from tfgate.tfs.tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

TIMEOUT = 30.0
TARGETS = ("model-server", "tfgate")
# rpc -> (request class, response class)
MESSAGES: dict[str, tuple[Any, Any]] = {
    "Predict": (predict_pb2.PredictRequest, predict_pb2.PredictResponse),
    "Classify": (
        classification_pb2.ClassificationRequest,
        classification_pb2.ClassificationResponse,
    ),
    "Regress": (regression_pb2.RegressionRequest, regression_pb2.RegressionResponse),
    "MultiInference": (
        inference_pb2.MultiInferenceRequest,
        inference_pb2.MultiInferenceResponse,
    ),
    "GetModelMetadata": (
        get_model_metadata_pb2.GetModelMetadataRequest,
        get_model_metadata_pb2.GetModelMetadataResponse,
    ),
    "GetModelStatus": (
        get_model_status_pb2.GetModelStatusRequest,
        get_model_status_pb2.GetModelStatusResponse,
    ),
}


@pytest.fixture(scope="module")
def channels(conformance: Conformance) -> Iterator[dict[str, grpc.Channel]]:  # noqa: F811
    opened = {name: grpc.insecure_channel(target) for name, target in conformance.targets.items()}
    try:
        yield opened
    finally:
        for channel in opened.values():
            channel.close()


def call(channel: grpc.Channel, rpc: str, request: Any) -> Any:
    if rpc == "GetModelStatus":
        return model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            request, timeout=TIMEOUT
        )
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return getattr(stub, rpc)(request, timeout=TIMEOUT)


def dump(message: Any) -> str:
    """Text format, map entries sorted and empty submessages shown: presence is compared too."""
    return text_format.MessageToString(message)


def pick(message: Any, path: str) -> Any:
    """The value at a Fields path: dotted names, ``name[key]`` for maps and lists, ``len(...)``."""
    counted = re.fullmatch(r"len\((.*)\)", path)
    if counted:
        return len(pick(message, counted.group(1)))
    value = message
    for part in path.split("."):
        name, _, key = part.partition("[")
        value = getattr(value, name)
        if key:
            key = key.rstrip("]")
            value = value[int(key)] if key.isdigit() else value[key]
    return value


def check(channel: grpc.Channel, item: Call) -> None:
    request_class, response_class = MESSAGES[item.rpc]
    request = text_format.Parse(item.request, request_class())
    expect = item.expect
    where = f"{item.rpc} {item.request!r}"
    if isinstance(expect, Error):
        with pytest.raises(grpc.RpcError) as info:
            call(channel, item.rpc, request)
        error: Any = info.value
        assert error.code() == expect.code, f"{where}: {error.code()} {error.details()!r}"
        assert (error.details() or "").startswith(expect.start), where
        assert expect.part in (error.details() or ""), where
        return
    response = call(channel, item.rpc, request)
    if isinstance(expect, Answer):
        assert dump(response) == dump(text_format.Parse(expect.text, response_class())), where
    elif isinstance(expect, Fields):
        got = {path: pick(response, path) for path in expect.values}
        assert got == expect.values, where
    else:
        assert isinstance(expect, Check)
        expect.function(response)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_tf_serving_expectation(channels: dict[str, grpc.Channel], target: str, case: Case) -> None:
    for item in case.calls:
        check(channels[target], item)


def test_cases_are_unique_and_sourced() -> None:
    assert len({c.id for c in CASES}) == len(CASES)
    assert all(c.calls and c.source for c in CASES)


def test_bad_model_config(tmp_path: Path) -> None:
    """tensorflow_model_server_test.py testBadModelConfig, with TF Serving's bad_model_config.txt
    text."""
    config = tmp_path / "bad_model_config.txt"
    config.write_text("improperly formatted file")
    result = run_model_server("--model-config", str(config), "--port", "0")
    assert result.returncode == 1
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in result.stderr
    assert f"Invalid protobuf file: '{config}'" in result.stderr
