"""tfgate.v1 over HTTP/JSON: the routes the ``google.api.http`` annotations of inference.proto
declare, with the proto3 JSON mapping of its messages as bodies.

A body that works with grpcurl works here: the JSON is written as the tfgate.v1 message's bytes
(tfgate.fronts.http.v1_json), which take the very path a gRPC call takes (tfgate.fronts.v1), and
the answer is the proto3 JSON of the message gRPC would send. A path under /tfgate/v1/ that no
rule matches is 404; one a rule matches with another HTTP method is 405.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from tfgate.errors import NotFound
from tfgate.fronts import v1 as v1_messages
from tfgate.fronts.grpc import SERVICE_NAME
from tfgate.fronts.http import v1_json
from tfgate.fronts.http.base import Converter, begin, json_response, read_body
from tfgate.fronts.http.routes import http_rules
from tfgate.inference import Inference
from tfgate.v1 import inference_pb2

PREFIX: Final = "/tfgate/v1/"
_parse_get_model = v1_messages.parser(inference_pb2.GetModelRequest)

Route = Callable[[web.Request, dict[str, str]], Awaitable[web.Response]]


class V1Routes:
    def __init__(self, inference: Inference, limit: int, convert: Converter) -> None:
        self._inference = inference
        self._limit = limit
        self._convert = convert
        service = inference_pb2.DESCRIPTOR.services_by_name[SERVICE_NAME.rsplit(".", 1)[1]]
        handlers: dict[str, Route] = {"Predict": self._predict, "GetModel": self._get_model}
        self._rules = [(rule, handlers[rule.method]) for rule in http_rules(service)]

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", PREFIX + "{tail:.*}", self._dispatch)

    async def _dispatch(self, request: web.Request) -> web.Response:
        path = request.rel_url.raw_path
        verb = "GET" if request.method == "HEAD" else request.method  # HEAD: GET, no body
        allowed: list[str] = []
        for rule, handler in self._rules:
            fields = rule.match(path)
            if fields is None:
                continue
            if rule.verb == verb:
                return await handler(request, fields)
            allowed.append(rule.verb)
        if allowed:
            raise web.HTTPMethodNotAllowed(
                request.method,
                allowed,
                text=f"{request.method} is not allowed on {path[:512]}; use {', '.join(allowed)}",
            )
        raise NotFound(f"no tfgate.v1 route {request.method} {path[:512]}")

    async def _predict(self, request: web.Request, fields: dict[str, str]) -> web.Response:
        record = begin(request, "Predict", fields["model"])
        await self._inference.admit(record.call, "Predict", fields["model"])  # before the body
        body = await read_body(request, self._limit)
        model = fields["model"]
        data = await self._convert(lambda b: v1_json.predict_request(b, model), body, record.call)
        answer = await self._inference.predict(v1_messages.predict_of(data), record.call)
        record.version = answer.version
        return json_response(
            v1_json.predict_response_json(
                answer.model, answer.version, answer.signature, answer.arrays()
            )
        )

    async def _get_model(self, request: web.Request, fields: dict[str, str]) -> web.Response:
        record = begin(request, "GetModel", fields["model"])
        data = v1_json.get_model_query(fields["model"], request.rel_url.query.items())
        message = _parse_get_model(data)
        model = await self._inference.get_model(
            message.model, message.version, message.version_label, record.call
        )
        record.version = model.version
        return json_response(v1_json.message_json(model))
