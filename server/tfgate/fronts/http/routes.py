"""HTTP routes read from a service's `google.api.http` options, as plain data.

protos/tfgate/v1/inference.proto declares the routes tfgate serves; `http_rules` turns a
ServiceDescriptor's options into `HttpRule`s: the HTTP verb, the path template compiled to a
regex, and what the body holds. No I/O and no web framework: the HTTP front builds its router
from these.

Path templates follow google/api/http.proto::

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb     = ":" LITERAL ;

`*` matches one path segment, `**` zero or more and only as the last segment; `{f}` means
`{f=*}`. A variable over one segment gets its value fully percent-decoded; one over several keeps
`%2F` (an encoded slash) as it is, since decoding it would change the value's segments. Path
variables name singular, non-message fields of the request, nested through singular messages
(`{a.b}`); `body` is "*", "" or a top-level field. A method's `additional_bindings` become rules
of their own, after its main one. `selector` is ignored (it only matters in service configs).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Final

from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)

from tfgate.errors import InvalidArgument
from tfgate.tfs.google.api import annotations_pb2, http_pb2

_VERBS: Final = {"get": "GET", "put": "PUT", "post": "POST", "delete": "DELETE", "patch": "PATCH"}
# RFC 3986 pchar without ":" (which starts the verb) and the template syntax ("*", "=").
_LITERAL: Final = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()+,;@]|%[0-9A-Fa-f]{2})+")
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# An HTTP method token (RFC 9110), for `custom` patterns.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ENCODED_SLASH: Final = re.compile(r"(%2[Ff])")


@dataclass(frozen=True)
class HttpRule:
    """One HTTP binding of an RPC."""

    method: str  # the RPC's name, e.g. "Predict"
    verb: str  # "GET", "POST", "PUT", "DELETE", "PATCH", or a custom pattern's kind
    template: str  # e.g. "/tfgate/v1/models/{model}:predict"
    body: str  # "*", "" (no body) or a field name
    pattern: re.Pattern[str]  # full-match regex of the URL path; one named group per variable
    fields: tuple[str, ...]  # the variables' field paths, in order (e.g. ("model",))
    # The fields whose variable may span several segments: their %2F stays encoded.
    multi_segment: frozenset[str] = frozenset()

    def match(self, path: str) -> dict[str, str] | None:
        """Field path -> percent-decoded value if `path` (the URL path as sent, still
        percent-encoded, without the query) matches, else None.

        Raises InvalidArgument, naming the field, when a value's percent-encoding is not UTF-8.
        """
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {
            field: _decode(found.group(f"v{i}") or "", field, field in self.multi_segment)
            for i, field in enumerate(self.fields)
        }


def http_rules(service: ServiceDescriptor) -> list[HttpRule]:
    """Every `google.api.http` binding of `service`'s methods, in method order.

    Methods without the option have no HTTP route. A binding that breaks the rules above raises
    ValueError naming the method.
    """
    rules = []
    for method in service.methods:
        options = method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        main = options.Extensions[annotations_pb2.http]
        rules.append(_rule(method, main))
        for extra in main.additional_bindings:
            if extra.additional_bindings:
                raise ValueError(
                    f"{method.full_name}: additional_bindings cannot have additional_bindings"
                )
            rules.append(_rule(method, extra))
    return rules


def _rule(method: MethodDescriptor, rule: http_pb2.HttpRule) -> HttpRule:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        raise ValueError(f"{method.full_name}: google.api.http sets no pattern (get, post, ...)")
    if kind == "custom":
        verb, template = rule.custom.kind, rule.custom.path
        if not _TOKEN.fullmatch(verb):
            raise ValueError(f"{method.full_name}: custom pattern kind {verb!r} is no HTTP method")
    else:
        verb, template = _VERBS[kind], getattr(rule, kind)
    if rule.response_body:
        raise ValueError(f"{method.full_name}: response_body is not supported")
    try:
        parsed = _Parser(template).parse()
    except ValueError as error:
        raise ValueError(f"{method.full_name}: bad path template {template!r}: {error}") from None
    fields = tuple(field for field, _ in parsed.variables)
    for field in fields:
        _check_path_field(method, method.input_type, field)
    if len(set(fields)) != len(fields):
        raise ValueError(f"{method.full_name}: {template!r} binds a field twice")
    if rule.body not in ("", "*") and rule.body not in method.input_type.fields_by_name:
        raise ValueError(
            f"{method.full_name}: body {rule.body!r} is not a field of "
            f"{method.input_type.full_name}"
        )
    return HttpRule(
        method=method.name,
        verb=verb,
        template=template,
        body=rule.body,
        pattern=re.compile(parsed.regex),
        fields=fields,
        multi_segment=frozenset(field for field, single in parsed.variables if not single),
    )


def _check_path_field(method: MethodDescriptor, message: Descriptor, path: str) -> None:
    *parents, leaf = path.split(".")
    for name in parents:
        field = message.fields_by_name.get(name)
        if field is None or field.message_type is None or field.is_repeated:
            raise ValueError(
                f"{method.full_name}: path variable {path!r}: {name!r} is no singular message "
                f"field of {message.full_name}"
            )
        message = field.message_type
    field = message.fields_by_name.get(leaf)
    if field is None:
        raise ValueError(
            f"{method.full_name}: path variable {path!r}: no field {leaf!r} in {message.full_name}"
        )
    if field.is_repeated or field.type in (
        FieldDescriptor.TYPE_MESSAGE,
        FieldDescriptor.TYPE_GROUP,
    ):
        raise ValueError(
            f"{method.full_name}: path variable {path!r} must name a singular scalar field"
        )


def _decode(raw: str, field: str, multi_segment: bool) -> str:
    try:
        if not multi_segment:
            return urllib.parse.unquote(raw, errors="strict")
        parts = _ENCODED_SLASH.split(raw)  # odd indexes are the %2F themselves
        return "".join(
            part if i % 2 else urllib.parse.unquote(part, errors="strict")
            for i, part in enumerate(parts)
        )
    except UnicodeDecodeError:
        raise InvalidArgument(f"{field}: the URL path's percent-encoding is not UTF-8") from None


@dataclass(frozen=True)
class _Parsed:
    regex: str
    variables: list[tuple[str, bool]]  # (field path, spans one segment)


class _Parser:
    """Recursive descent over the grammar in the module docstring, building the regex."""

    def __init__(self, template: str) -> None:
        self.text = template
        self.pos = 0
        self.variables: list[tuple[str, bool]] = []
        self.rest_taken = False  # a `**` was seen: nothing but the verb may follow

    def parse(self) -> _Parsed:
        if not self.text.startswith("/"):
            raise ValueError("must start with '/'")
        self.pos = 1
        regex = self.segments(in_variable=False)
        if self.peek() == ":":
            self.pos += 1
            regex += ":" + re.escape(self.literal("verb"))
        if self.pos != len(self.text):
            raise ValueError(f"unexpected {self.text[self.pos]!r} at {self.pos}")
        return _Parsed(regex, self.variables)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def segments(self, *, in_variable: bool) -> str:
        """Regex for `Segments`; each segment brings its leading "/" except the first of a
        variable, whose "/" the variable's own caller writes."""
        out = ""
        first = True
        while True:
            if self.rest_taken:
                raise ValueError("'**' must be the last segment")
            out += self.segment(in_variable=in_variable, leading_slash=not (first and in_variable))
            first = False
            if self.peek() != "/":
                return out
            self.pos += 1

    def segment(self, *, in_variable: bool, leading_slash: bool) -> str:
        slash = "/" if leading_slash else ""
        if self.text.startswith("**", self.pos):
            self.pos += 2
            self.rest_taken = True
            # Zero or more segments: with its slash, the whole rest is optional.
            return "(?:/.*)?" if leading_slash else ".*"
        if self.peek() == "*":
            self.pos += 1
            return slash + "[^/]+"
        if self.peek() == "{":
            if in_variable:
                raise ValueError("variables cannot nest")
            return self.variable(slash)
        return slash + re.escape(self.literal("segment"))

    def variable(self, slash: str) -> str:
        self.pos += 1  # "{"
        path = self.field_path()
        index = len(self.variables)
        self.variables.append((path, True))
        if self.peek() == "=":
            self.pos += 1
            start = self.pos
            inner = self.segments(in_variable=True)
            source = self.text[start : self.pos]
            single = "/" not in source and "**" not in source
        else:
            inner, single = "[^/]+", True
        if self.peek() != "}":
            raise ValueError(f"variable {path!r} is not closed with '}}'")
        self.pos += 1
        self.variables[index] = (path, single)
        group = f"(?P<v{index}>{inner})"
        if inner.startswith(".*"):
            # {f=**}: zero segments match too, slash and all; the value is then "".
            return f"(?:{slash}{group})?" if slash else group
        return slash + group

    def field_path(self) -> str:
        parts = []
        while True:
            found = _IDENT.match(self.text, self.pos)
            if found is None:
                raise ValueError(f"expected a field name at {self.pos}")
            parts.append(found.group())
            self.pos = found.end()
            if self.peek() != ".":
                return ".".join(parts)
            self.pos += 1

    def literal(self, what: str) -> str:
        found = _LITERAL.match(self.text, self.pos)
        if found is None:
            where = repr(self.peek()) if self.peek() else "the end"
            raise ValueError(f"expected a {what} at {self.pos}, found {where}")
        self.pos = found.end()
        return found.group()
