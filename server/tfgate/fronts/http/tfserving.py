"""TF Serving's REST API, served as TF Serving serves it, through the request core.

    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata   signatures
    POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict    instances / inputs
    POST /v1/models/{m}[/versions/{v}|/labels/{l}]:classify   examples
    POST /v1/models/{m}[/versions/{v}|/labels/{l}]:regress    examples

Paths are matched as TF Serving matches them (case-insensitive, on the raw path); anything else
under /v1/ is answered as TF Serving answers it: 400, "Malformed request: METHOD PATH" (and a
CORS preflight, OPTIONS with an http(s) ``Origin``, with 200). Model names and labels are
percent-decoded. Bodies
are read as JSON whatever their content type (TF Serving's examples send ``curl -d``). Predict
goes through validation and preprocessing like any Predict; classify and regress go to TF
Serving's Classify and Regress as they are, with the same retries, cap and deadline.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Final

from aiohttp import web

from tfgate import translate
from tfgate.calls import Call, Record
from tfgate.domain import Predict
from tfgate.errors import InvalidArgument
from tfgate.fronts.http import tfserving_examples, tfserving_json
from tfgate.fronts.http.base import Converter, begin, json_response, read_body
from tfgate.inference import TF_SERVING, Inference

_INT64_MAX: Final = 2**63 - 1
_PREDICT_PATH: Final = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
_STATUS_PATH: Final = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?"
)
_METHODS: Final = {
    "classify": "/tensorflow.serving.PredictionService/Classify",
    "regress": "/tensorflow.serving.PredictionService/Regress",
}
# Every path this module answers, well-formed or not.
PATH: Final = re.compile(r"(?i)/v1(?:/|$)")


# The methods as the access log names them: TF Serving's gRPC names for the same calls.
_NAMES: Final = {
    "predict": "Predict",
    "classify": "Classify",
    "regress": "Regress",
    "status": "GetModelStatus",
    "metadata": "GetModelMetadata",
}


def _decoded(groups: tuple[str | None, ...]) -> list[str | None]:
    """Path parts percent-decoded, as TF Serving decodes them."""
    return [None if g is None else urllib.parse.unquote(g, errors="replace") for g in groups]


def _preflight(request: web.Request) -> web.Response:
    """A CORS preflight, answered as TF Serving answers it: allowed for an http(s) origin."""
    origin = request.headers.get("Origin", "")
    if not origin.startswith(("http://", "https://")):
        raise InvalidArgument("Origin header is missing in CORS preflight")
    response = web.Response(status=200)
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "POST, GET"
    response.headers["Access-Control-Allow-Headers"] = request.headers.get(
        "Access-Control-Request-Headers", "Content-Type"
    )
    return response


def _selector(model: str, version: str | None, label: str | None) -> translate.Selector:
    number = 0
    if version is not None:
        number = int(version)
        if number > _INT64_MAX:
            raise InvalidArgument(f"Failed to convert version: {version} to numeric.")
    return translate.selector(model, number, label or "")


class TfServingRoutes:
    def __init__(self, inference: Inference, limit: int, convert: Converter) -> None:
        self._inference = inference
        self._limit = limit
        self._convert = convert

    def add_to(self, router: web.UrlDispatcher) -> None:
        # TF Serving matches its paths without regard to case.
        router.add_route("*", "/{version:[vV]1}{tail:(/.*)?}", self._dispatch)

    async def _dispatch(self, request: web.Request) -> web.Response:
        path = request.rel_url.raw_path
        if request.method == "POST":
            match = _PREDICT_PATH.fullmatch(path)
            if match is not None:
                model, version, label, verb = _decoded(match.groups())
                assert model is not None and verb is not None  # the pattern requires both
                verb = verb.lower()
                record = begin(request, _NAMES[verb], model)
                sel = _selector(model, version, label)
                await self._inference.admit(record.call, TF_SERVING, sel.model)  # before the body
                body = await read_body(request, self._limit)
                if verb == "predict":
                    return json_response(await self._predict(sel, body, record.call, record))
                return json_response(await self._examples(sel, verb, body, record.call))
        elif request.method == "GET":
            match = _STATUS_PATH.fullmatch(path)
            if match is not None:
                model, version, label, metadata = _decoded(match.groups())
                method = _NAMES["metadata" if metadata else "status"]
                record = begin(request, method, model or "")
                if not model:
                    raise InvalidArgument("Missing model name in request.")
                sel = _selector(model, version, label)
                if metadata:
                    return json_response(await self._metadata(sel, record.call))
                status = await self._inference.model_status(sel, record.call)
                return json_response(tfserving_json.model_status_body(status.SerializeToString()))
        elif request.method == "OPTIONS":
            return _preflight(request)
        raise InvalidArgument(f"Malformed request: {request.method} {path[:512]}")

    async def _predict(
        self, sel: translate.Selector, body: bytes, call: Call, record: Record
    ) -> bytes:
        parsed = await self._convert(tfserving_json.parse_predict, body, call)
        request = Predict(
            sel.model,
            sel.version,
            sel.label,
            parsed.signature,
            parsed.inputs,
            size=len(body),
            unnamed=parsed.unnamed,
        )
        answer = await self._inference.predict(request, call)
        record.version = answer.version
        return tfserving_json.predict_body(answer.arrays(), parsed.row_format)

    async def _examples(self, sel: translate.Selector, verb: str, body: bytes, call: Call) -> bytes:
        spec = sel.model_spec().SerializeToString()
        if verb == "classify":
            data = tfserving_examples.classification_request(body, spec)
            answer = await self._inference.forward(_METHODS[verb], data, call)
            return tfserving_examples.classify_body(answer)
        data = tfserving_examples.regression_request(body, spec)
        answer = await self._inference.forward(_METHODS[verb], data, call)
        return tfserving_examples.regress_body(answer)

    async def _metadata(self, sel: translate.Selector, call: Call) -> bytes:
        answer = await self._inference.model_metadata(translate.metadata_request(sel), call)
        return tfserving_json.model_metadata_body(answer.SerializeToString())
