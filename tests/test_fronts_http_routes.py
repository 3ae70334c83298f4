"""tfgate.fronts.http.routes: google.api.http options read into matchable rules."""

from __future__ import annotations

import urllib.parse
from itertools import count

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from hypothesis import given
from hypothesis import strategies as st

from tfgate.errors import InvalidArgument
from tfgate.fronts.http.routes import HttpRule, http_rules
from tfgate.tfs.google.api import annotations_pb2, http_pb2
from tfgate.v1 import inference_pb2

FDP = descriptor_pb2.FieldDescriptorProto
_files = count()


def v1_rules() -> dict[str, HttpRule]:
    rules = http_rules(inference_pb2.DESCRIPTOR.services_by_name["InferenceService"])
    assert len(rules) == len({r.method for r in rules})
    return {rule.method: rule for rule in rules}


# -- tfgate.v1 ------------------------------------------------------------------------------------


def test_v1_predict_route() -> None:
    rule = v1_rules()["Predict"]
    assert (rule.verb, rule.template, rule.body) == (
        "POST",
        "/tfgate/v1/models/{model}:predict",
        "*",
    )
    assert rule.fields == ("model",)
    assert rule.match("/tfgate/v1/models/half_plus_two:predict") == {"model": "half_plus_two"}
    assert rule.match("/tfgate/v1/models/half_plus_two") is None
    assert rule.match("/tfgate/v1/models/a/b:predict") is None
    assert rule.match("/tfgate/v1/models/:predict") is None
    assert rule.match("/tfgate/v1/models/half_plus_two:predictx") is None


def test_v1_get_model_route() -> None:
    rule = v1_rules()["GetModel"]
    assert (rule.verb, rule.template, rule.body) == ("GET", "/tfgate/v1/models/{model}", "")
    assert rule.fields == ("model",)
    assert rule.match("/tfgate/v1/models/half_plus_two") == {"model": "half_plus_two"}
    assert rule.match("/tfgate/v1/models/a/b") is None
    assert rule.match("/tfgate/v1/models/a/b:predict") is None
    assert rule.match("/tfgate/v1/models") is None
    assert rule.match("/TFGATE/v1/models/x") is None


def test_v1_rules_are_the_only_routes_and_follow_the_method_order() -> None:
    service = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"]
    assert [r.method for r in http_rules(service)] == [m.name for m in service.methods]


def test_single_segment_values_are_percent_decoded() -> None:
    rule = v1_rules()["Predict"]
    assert rule.match("/tfgate/v1/models/caf%C3%A9%2Fx%20y:predict") == {"model": "café/x y"}
    assert rule.match("/tfgate/v1/models/a%3Apredict:predict") == {"model": "a:predict"}


def test_bad_percent_encoding_names_the_field() -> None:
    with pytest.raises(InvalidArgument, match=r"^model: .*UTF-8"):
        v1_rules()["GetModel"].match("/tfgate/v1/models/%FF")


@given(st.text(min_size=1))
def test_any_model_name_round_trips_through_the_path(name: str) -> None:
    try:
        quoted = urllib.parse.quote(name, safe="")
    except UnicodeEncodeError:  # lone surrogates have no UTF-8 form, so no URL either
        return
    rule = v1_rules()["Predict"]
    assert rule.match(f"/tfgate/v1/models/{quoted}:predict") == {"model": name}


# -- rules built in a test descriptor pool -------------------------------------------------------


def binding(
    verb: str = "get", path: str = "/v1/x", body: str = "", **more: object
) -> http_pb2.HttpRule:
    rule = http_pb2.HttpRule(body=body, **more)  # type: ignore[arg-type]
    if verb == "custom":
        rule.custom.kind, rule.custom.path = "HEAD", path
    else:
        setattr(rule, verb, path)
    return rule


def service(*bindings: http_pb2.HttpRule | None) -> ServiceDescriptor:
    """A service t<n>.S in a pool of its own; method M<i> carries bindings[i] (None: no option)."""
    package = f"t{next(_files)}"
    file = descriptor_pb2.FileDescriptorProto(
        name=f"{package}.proto",
        package=package,
        syntax="proto3",
        dependency=["google/api/annotations.proto"],
    )
    parent = file.message_type.add(name="Parent")
    parent.field.add(name="name", number=1, type=FDP.TYPE_STRING, label=FDP.LABEL_OPTIONAL)
    parent.field.add(
        name="child",
        number=2,
        type=FDP.TYPE_MESSAGE,
        type_name=f".{package}.Parent",
        label=FDP.LABEL_OPTIONAL,
    )
    parent.field.add(
        name="children",
        number=3,
        type=FDP.TYPE_MESSAGE,
        type_name=f".{package}.Parent",
        label=FDP.LABEL_REPEATED,
    )
    request = file.message_type.add(name="Request")
    for number, name in enumerate(["name", "id", "item_id", "other"], start=1):
        request.field.add(name=name, number=number, type=FDP.TYPE_STRING, label=FDP.LABEL_OPTIONAL)
    request.field.add(name="version", number=5, type=FDP.TYPE_INT64, label=FDP.LABEL_OPTIONAL)
    request.field.add(name="tags", number=6, type=FDP.TYPE_STRING, label=FDP.LABEL_REPEATED)
    request.field.add(
        name="parent",
        number=7,
        type=FDP.TYPE_MESSAGE,
        type_name=f".{package}.Parent",
        label=FDP.LABEL_OPTIONAL,
    )
    proto = file.service.add(name="S")
    for i, rule in enumerate(bindings):
        method = proto.method.add(
            name=f"M{i}", input_type=f".{package}.Request", output_type=f".{package}.Request"
        )
        if rule is not None:
            method.options.Extensions[annotations_pb2.http].CopyFrom(rule)
    pool = descriptor_pool.DescriptorPool()
    for module in (descriptor_pb2, http_pb2, annotations_pb2):
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb))
    pool.Add(file)
    return pool.FindServiceByName(f"{package}.S")


def one_rule(path: str, verb: str = "get") -> HttpRule:
    (rule,) = http_rules(service(binding(verb, path)))
    return rule


def test_verbs() -> None:
    verbs = ["get", "put", "post", "delete", "patch", "custom"]
    rules = http_rules(service(*(binding(v, f"/v1/{v}") for v in verbs)))
    assert [(r.method, r.verb, r.template) for r in rules] == [
        ("M0", "GET", "/v1/get"),
        ("M1", "PUT", "/v1/put"),
        ("M2", "POST", "/v1/post"),
        ("M3", "DELETE", "/v1/delete"),
        ("M4", "PATCH", "/v1/patch"),
        ("M5", "HEAD", "/v1/custom"),
    ]


def test_methods_without_the_option_have_no_rule() -> None:
    rules = http_rules(service(None, binding("post", "/v1/y", body="*"), None))
    assert [(r.method, r.verb, r.body) for r in rules] == [("M1", "POST", "*")]


def test_body_may_name_a_top_level_field() -> None:
    (rule,) = http_rules(service(binding("post", "/v1/{id}", body="parent")))
    assert rule.body == "parent"


def test_additional_bindings_follow_the_main_one() -> None:
    main = binding(
        "get",
        "/v1/items/{id}",
        additional_bindings=[
            binding("post", "/v1/items/{id}:fetch", body="*"),
            binding("get", "/v1/parents/{parent.name}/items/{id}"),
        ],
    )
    rules = http_rules(service(main, binding("delete", "/v1/items/{id}")))
    assert [(r.method, r.verb, r.template, r.body, r.fields) for r in rules] == [
        ("M0", "GET", "/v1/items/{id}", "", ("id",)),
        ("M0", "POST", "/v1/items/{id}:fetch", "*", ("id",)),
        ("M0", "GET", "/v1/parents/{parent.name}/items/{id}", "", ("parent.name", "id")),
        ("M1", "DELETE", "/v1/items/{id}", "", ("id",)),
    ]
    assert rules[2].match("/v1/parents/p%201/items/7") == {"parent.name": "p 1", "id": "7"}
    assert rules[1].match("/v1/items/7") is None


def test_nested_field_paths_and_several_variables_in_order() -> None:
    rule = one_rule("/v1/{parent.child.name}/x/{item_id}/{id}")
    assert rule.fields == ("parent.child.name", "item_id", "id")
    assert rule.match("/v1/a/x/b/c") == {"parent.child.name": "a", "item_id": "b", "id": "c"}
    assert rule.match("/v1/a/y/b/c") is None
    assert len(rule.pattern.groupindex) == 3


def test_wildcards_outside_variables_match_but_bind_nothing() -> None:
    rule = one_rule("/v1/*/{id}")
    assert rule.fields == ("id",)
    assert rule.match("/v1/anything/7") == {"id": "7"}
    assert rule.match("/v1/7") is None
    rest = one_rule("/static/**")
    assert rest.fields == ()
    for path in ("/static", "/static/a", "/static/a/b/c"):
        assert rest.match(path) == {}, path
    assert rest.match("/staticx") is None
    assert rest.match("/other/a") is None


def test_multi_segment_variables_keep_encoded_slashes() -> None:
    rule = one_rule("/v1/{name=shelves/*/books/*}")
    assert rule.match("/v1/shelves/1/books/2") == {"name": "shelves/1/books/2"}
    assert rule.match("/v1/shelves/a%2Fb%20c/books/2") == {"name": "shelves/a%2Fb c/books/2"}
    assert rule.match("/v1/shelves/1") is None
    assert rule.match("/v1/shelves/1/books/2/3") is None


def test_double_star_in_a_variable_takes_the_rest() -> None:
    rule = one_rule("/v1/{name=files/**}")
    assert rule.match("/v1/files") == {"name": "files"}
    assert rule.match("/v1/files/a/b%2fc") == {"name": "files/a/b%2fc"}
    assert rule.match("/v1/other/a") is None
    verb = one_rule("/v1/{name=**}:get")
    assert verb.match("/v1/a/b:get") == {"name": "a/b"}
    assert verb.match("/v1:get") == {"name": ""}
    assert verb.match("/v1/a/b") is None


def test_a_literal_variable_pattern_and_verb_after_a_variable() -> None:
    rule = one_rule("/v1/{id=latest}:watch")
    assert rule.match("/v1/latest:watch") == {"id": "latest"}
    assert rule.match("/v1/other:watch") is None


# -- bad rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("", "must start with '/'"),
        ("v1/x", "must start with '/'"),
        ("/", "expected a segment"),
        ("/v1//x", "expected a segment"),
        ("/v1/x/", "expected a segment"),
        ("/v1/{name", "not closed"),
        ("/v1/{}", "expected a field name"),
        ("/v1/{9a}", "expected a field name"),
        ("/v1/{name=}", "expected a segment"),
        ("/v1/{name={id}}", "cannot nest"),
        ("/v1/**/x", "'\\*\\*' must be the last segment"),
        ("/v1/{name=**}/x", "'\\*\\*' must be the last segment"),
        ("/v1/{name=**/x}", "'\\*\\*' must be the last segment"),
        ("/v1/x:", "expected a verb"),
        ("/v1/x:a:b", "unexpected ':'"),
        ("/v1/x y", "unexpected ' '"),
        ("/v1/***", "unexpected '\\*'"),
    ],
)
def test_unparsable_templates_name_the_method(template: str, reason: str) -> None:
    svc = service(None, binding("get", template))
    with pytest.raises(ValueError, match=rf"^{svc.full_name}\.M1: bad path template .*{reason}"):
        http_rules(svc)


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        (binding("get", "/v1/{missing}"), "no field 'missing'"),
        (binding("get", "/v1/{parent}"), "singular scalar"),
        (binding("get", "/v1/{tags}"), "singular scalar"),
        (binding("get", "/v1/{parent.nope}"), "no field 'nope'"),
        (binding("get", "/v1/{name.x}"), "'name' is no singular message"),
        (binding("get", "/v1/{parent.children.name}"), "'children' is no singular message"),
        (binding("get", "/v1/{id}/{id}"), "binds a field twice"),
        (binding("post", "/v1/x", body="nope"), "body 'nope' is not a field"),
        (http_pb2.HttpRule(body="*"), "sets no pattern"),
        (binding("get", "/v1/x", response_body="name"), "response_body is not supported"),
        (
            binding(
                "get",
                "/v1/x",
                additional_bindings=[binding("get", "/v1/y", additional_bindings=[binding()])],
            ),
            "additional_bindings cannot have additional_bindings",
        ),
        (binding("get", "/v1/{id", additional_bindings=[binding()]), "not closed"),
    ],
)
def test_bad_rules_name_the_method(rule: http_pb2.HttpRule, reason: str) -> None:
    svc = service(rule)
    with pytest.raises(ValueError, match=rf"^{svc.full_name}\.M0: .*{reason}"):
        http_rules(svc)


def test_a_bad_additional_binding_names_the_method() -> None:
    svc = service(binding("get", "/v1/x", additional_bindings=[binding("post", "/v1/{nope}")]))
    with pytest.raises(ValueError, match=rf"^{svc.full_name}\.M0: .*no field 'nope'"):
        http_rules(svc)


def test_custom_kind_must_be_an_http_method_token() -> None:
    rule = http_pb2.HttpRule()
    rule.custom.kind, rule.custom.path = "NOT A METHOD", "/v1/x"
    svc = service(rule)
    with pytest.raises(ValueError, match=rf"^{svc.full_name}\.M0: custom pattern kind"):
        http_rules(svc)
