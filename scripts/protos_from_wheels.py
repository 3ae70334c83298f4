"""Write the vendored .proto files from the descriptors inside pinned wheels.

Two wheels ship compiled `_pb2` modules, not .proto sources:

    tensorflow-serving-api    (requirements/tfserving.txt)  TF Serving's API: tensorflow*/, xla/
    googleapis-common-protos  (requirements/dev.txt)        google/api/{annotations,http}.proto,
                                                            the google.api.http route options

Each module carries its serialized FileDescriptorProto; this script walks the dependency closure
of the modules tfgate needs from each wheel (the two services tfgate calls, PredictionService and
ModelService; the google.api.http annotation) and prints every file back as .proto text under
--out, keeping paths, packages, names, field numbers and options as they are. google/protobuf/* is
left out: protoc ships it.

The printed text compiles back to descriptors equal to the wheels' (tests/test_protos.py checks).
Descriptors carry no comments, so the files have none besides a header.

This is the only tfgate code that imports TensorFlow, and only when run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from google.protobuf import descriptor_pb2, unknown_fields
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_PREFIX = "google/protobuf/"


@dataclass(frozen=True)
class Source:
    """A pinned wheel, and the compiled modules of it whose import closure protos/ holds."""

    distribution: str
    pin_file: Path
    modules: tuple[str, ...]
    see_also: str  # where the comments the descriptors lack are


TF_SERVING = Source(
    "tensorflow-serving-api",
    ROOT / "requirements" / "tfserving.txt",
    (
        "tensorflow_serving.apis.prediction_service_pb2",
        "tensorflow_serving.apis.model_service_pb2",
    ),
    "TF Serving's sources",
)
GOOGLE_API = Source(
    "googleapis-common-protos",
    ROOT / "requirements" / "dev.txt",
    ("google.api.annotations_pb2", "google.api.http_pb2"),
    "github.com/googleapis/googleapis",
)
SOURCES = (TF_SERVING, GOOGLE_API)

T = TypeVar("T")
K = TypeVar("K")

FDP = descriptor_pb2.FieldDescriptorProto
_SCALAR_TYPES = {
    FDP.TYPE_DOUBLE: "double",
    FDP.TYPE_FLOAT: "float",
    FDP.TYPE_INT64: "int64",
    FDP.TYPE_UINT64: "uint64",
    FDP.TYPE_INT32: "int32",
    FDP.TYPE_FIXED64: "fixed64",
    FDP.TYPE_FIXED32: "fixed32",
    FDP.TYPE_BOOL: "bool",
    FDP.TYPE_STRING: "string",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_UINT32: "uint32",
    FDP.TYPE_SFIXED32: "sfixed32",
    FDP.TYPE_SFIXED64: "sfixed64",
    FDP.TYPE_SINT32: "sint32",
    FDP.TYPE_SINT64: "sint64",
}
# Field numbers run up to 2**29 - 1; descriptor ranges store `max` as that plus one.
_MAX_FIELD_END = 2**29
_MAX_ENUM_VALUE = 2**31 - 1


def read_pin(source: Source) -> str:
    """The version of `source` pinned in its requirements file."""
    name = re.escape(source.distribution)
    for line in source.pin_file.read_text().splitlines():
        match = re.fullmatch(rf"\s*{name}\s*==\s*([^\s#;]+).*", line)
        if match:
            return match.group(1)
    raise SystemExit(f"{source.pin_file}: no `{source.distribution}==<version>` line")


def wheel_descriptors(source: Source) -> list[descriptor_pb2.FileDescriptorProto]:
    """The FileDescriptorProtos of `source`'s modules and everything they import."""
    import importlib

    found: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    pending = [importlib.import_module(name).DESCRIPTOR for name in source.modules]
    while pending:
        file = pending.pop()
        if file.name in found:
            continue
        found[file.name] = descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb)
        pending.extend(file.dependencies)
    return [found[name] for name in sorted(found)]


def json_name_default(name: str) -> str:
    """protoc's default json_name: snake_case to lowerCamelCase."""
    out: list[str] = []
    upper_next = False
    for char in name:
        if char == "_":
            upper_next = True
        elif upper_next:
            out.append(char.upper())
            upper_next = False
        else:
            out.append(char)
    return "".join(out)


def quote(value: str | bytes) -> str:
    """A .proto string literal; anything but printable ASCII as octal escapes."""
    raw = value.encode() if isinstance(value, str) else value
    out = []
    for byte in raw:
        char = chr(byte)
        if char in "\"'\\":
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _number(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def _option_value(field: FieldDescriptor, value: object) -> str:
    if field.enum_type is not None:
        assert isinstance(value, int)
        return field.enum_type.values_by_number[value].name
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | bytes):
        return quote(value)
    if isinstance(value, float):
        return _number(value)
    return str(value)


def option_assignments(options: Message, prefix: str = "") -> list[str]:
    """`name = value` for every option set, nested messages (e.g. `features`) as dotted paths."""
    if len(unknown_fields.UnknownFieldSet(options)):
        raise ValueError(
            f"options with unknown fields (custom options?) cannot be printed:\n{options}"
        )
    out = []
    for field, value in options.ListFields():
        name = f"({field.full_name})" if field.is_extension else field.name
        if field.is_repeated:
            raise ValueError(f"repeated option {field.full_name} is not supported")
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            out.extend(option_assignments(value, f"{prefix}{name}."))
        else:
            out.append(f"{prefix}{name} = {_option_value(field, value)}")
    return out


def _bracket(items: Sequence[str]) -> str:
    return f" [{', '.join(items)}]" if items else ""


def _ranges(ranges: Iterable[tuple[int, int]], max_value: int) -> str:
    """`a`, `a to b`, `a to max`, from inclusive (start, end) pairs."""
    parts = []
    for start, end in ranges:
        if start == end:
            parts.append(str(start))
        else:
            parts.append(f"{start} to {'max' if end == max_value else end}")
    return ", ".join(parts)


class SymbolTable:
    """Every name the closure defines, to print type references as short as scoping allows."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        self.names: set[str] = set()
        for file in files:
            parts = file.package.split(".") if file.package else []
            for i in range(1, len(parts) + 1):
                self.names.add(".".join(parts[:i]))
            scope = file.package
            for message in file.message_type:
                self._message(message, scope)
            for enum in file.enum_type:
                self._enum(enum, scope)
            for field in file.extension:
                self.names.add(_join(scope, field.name))
            for service in file.service:
                service_name = _join(scope, service.name)
                self.names.add(service_name)
                self.names.update(_join(service_name, m.name) for m in service.method)

    def _message(self, message: descriptor_pb2.DescriptorProto, scope: str) -> None:
        name = _join(scope, message.name)
        self.names.add(name)
        self.names.update(_join(name, f.name) for f in message.field)
        self.names.update(_join(name, f.name) for f in message.extension)
        self.names.update(_join(name, o.name) for o in message.oneof_decl)
        for nested in message.nested_type:
            self._message(nested, name)
        for enum in message.enum_type:
            self._enum(enum, name)

    def _enum(self, enum: descriptor_pb2.EnumDescriptorProto, scope: str) -> None:
        self.names.add(_join(scope, enum.name))
        # C++ scoping: enum values are siblings of their enum, not children.
        self.names.update(_join(scope, v.name) for v in enum.value)

    def relative(self, full_name: str, scope: str) -> str:
        """The shortest suffix of `.a.b.C` that resolves to it from `scope`, else the full name.

        Mirrors protoc's lookup: the first component is searched from the innermost scope
        outwards and the first hit decides. Any hit that resolves elsewhere rejects the
        candidate, which errs on the side of longer names.
        """
        target = full_name.lstrip(".")
        parts = target.split(".")
        scopes = scope.split(".") if scope else []
        for k in range(len(parts) - 1, -1, -1):
            candidate = parts[k:]
            for i in range(len(scopes), -1, -1):
                if ".".join([*scopes[:i], candidate[0]]) in self.names:
                    if ".".join([*scopes[:i], *candidate]) == target:
                        return ".".join(candidate)
                    break
        return "." + target


def _join(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


class FilePrinter:
    """Prints one FileDescriptorProto as .proto source."""

    def __init__(self, file: descriptor_pb2.FileDescriptorProto, symbols: SymbolTable) -> None:
        self.file = file
        self.symbols = symbols
        if file.syntax in ("", "proto2"):
            self.syntax = "proto2"
        elif file.syntax in ("proto3", "editions"):
            self.syntax = file.syntax
        else:
            raise ValueError(f"{file.name}: unknown syntax {file.syntax!r}")
        self.lines: list[str] = []
        self.depth = 0
        self.gap = False  # a blank line goes after a nested message or enum

    def emit(self, text: str = "") -> None:
        if self.gap and text not in ("", "}"):
            self.lines.append("")
        self.gap = False
        self.lines.append("  " * self.depth + text if text else "")

    def open_block(self, text: str) -> None:
        """A message or enum: set apart from its siblings by blank lines."""
        if self.lines and self.lines[-1] and not self.lines[-1].endswith("{"):
            self.lines.append("")
        self.gap = False
        self.emit(text)
        self.depth += 1

    def close_block(self) -> None:
        self.depth -= 1
        self.emit("}")
        self.gap = True

    def render(self, header: Sequence[str]) -> str:
        file = self.file
        for line in header:
            self.emit(f"// {line}" if line else "//")
        self.emit()
        if self.syntax == "editions":
            edition = descriptor_pb2.Edition.Name(file.edition).removeprefix("EDITION_")
            self.emit(f"edition = {quote(edition)};")
        else:
            self.emit(f"syntax = {quote(self.syntax)};")
        if file.package:
            self.emit()
            self.emit(f"package {file.package};")
        if file.dependency:
            self.emit()
            for i, dependency in enumerate(file.dependency):
                kind = (
                    "public "
                    if i in file.public_dependency
                    else "weak "
                    if i in file.weak_dependency
                    else ""
                )
                self.emit(f"import {kind}{quote(dependency)};")
        options = option_assignments(file.options)
        if options:
            self.emit()
            for option in options:
                self.emit(f"option {option};")
        for enum in file.enum_type:
            self.emit()
            self.enum(enum)
        for message in file.message_type:
            self.emit()
            self.message(message, file.package)
        for service in file.service:
            self.emit()
            self.service(service)
        if file.extension:
            self.emit()
            self.extensions(file.extension, file.package)
        return "\n".join(self.lines) + "\n"

    # -- messages -------------------------------------------------------------------------------

    def message(self, message: descriptor_pb2.DescriptorProto, scope: str) -> None:
        name = _join(scope, message.name)
        self.open_block(f"message {message.name} {{")
        self.message_body(message, name)
        self.close_block()

    def message_body(self, message: descriptor_pb2.DescriptorProto, name: str) -> None:
        for option in option_assignments(message.options):
            self.emit(f"option {option};")
        for enum in message.enum_type:
            self.enum(enum)
        # Map entries and groups are nested types that protoc creates where their field is
        # declared, so other nested messages must be printed in between to keep their order.
        inline = self._inline_types(message, name)
        nested = iter(
            (i, nested) for i, nested in enumerate(message.nested_type) if i not in inline.values()
        )
        pending = next(nested, None)

        def nested_before(index: int) -> None:
            nonlocal pending
            while pending is not None and pending[0] < index:
                self.message(pending[1], name)
                pending = next(nested, None)

        nested_before(min(inline.values(), default=len(message.nested_type)))
        oneofs_seen: list[int] = []
        for oneof, run in _runs(message.field, _real_oneof):
            if oneof is None:
                for field in run:
                    if field.name in inline:
                        nested_before(inline[field.name])
                    self.field(field, message, name)
                continue
            if oneof in oneofs_seen:
                raise ValueError(f"{name}: fields of oneof {oneof} are not contiguous")
            oneofs_seen.append(oneof)
            indices = [inline[field.name] for field in run if field.name in inline]
            nested_before(min(indices, default=0))
            if pending is not None and any(pending[0] < i for i in indices):
                raise ValueError(f"{name}: cannot keep the order of nested types across a oneof")
            self.emit(f"oneof {message.oneof_decl[oneof].name} {{")
            self.depth += 1
            for option in option_assignments(message.oneof_decl[oneof].options):
                self.emit(f"option {option};")
            for field in run:
                self.field(field, message, name, in_oneof=True)
            self.depth -= 1
            self.emit("}")
        if oneofs_seen != sorted(oneofs_seen):
            raise ValueError(f"{name}: oneofs are not declared in the order of their fields")
        nested_before(len(message.nested_type))
        for ext_range in message.extension_range:
            options = option_assignments(ext_range.options)
            span = _ranges([(ext_range.start, ext_range.end - 1)], _MAX_FIELD_END - 1)
            self.emit(f"extensions {span}{_bracket(options)};")
        if message.reserved_range:
            spans = [(r.start, r.end - 1) for r in message.reserved_range]
            self.emit(f"reserved {_ranges(spans, _MAX_FIELD_END - 1)};")
        if message.reserved_name:
            self.emit(f"reserved {self._reserved_names(message.reserved_name)};")
        if message.extension:
            self.extensions(message.extension, name)

    def _inline_types(self, message: descriptor_pb2.DescriptorProto, name: str) -> dict[str, int]:
        """Field name -> index of the nested type it declares (map entry or group)."""
        out = {}
        for field in message.field:
            if field.type not in (FDP.TYPE_MESSAGE, FDP.TYPE_GROUP):
                continue
            index = self._nested_index(message, name, field.type_name)
            if index is None:
                continue
            nested = message.nested_type[index]
            if field.type == FDP.TYPE_GROUP or nested.options.map_entry:
                out[field.name] = index
        return out

    @staticmethod
    def _nested_index(
        message: descriptor_pb2.DescriptorProto, name: str, type_name: str
    ) -> int | None:
        for i, nested in enumerate(message.nested_type):
            if type_name == f".{name}.{nested.name}":
                return i
        return None

    def field(
        self,
        field: descriptor_pb2.FieldDescriptorProto,
        message: descriptor_pb2.DescriptorProto | None,
        scope: str,
        *,
        in_oneof: bool = False,
    ) -> None:
        nested = None
        if message is not None and field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_GROUP):
            index = self._nested_index(message, scope, field.type_name)
            nested = message.nested_type[index] if index is not None else None
        options = self._field_options(field)
        if nested is not None and nested.options.map_entry:
            key, value = nested.field
            type_text = f"map<{self._type(key, scope)}, {self._type(value, scope)}>"
            self.emit(f"{type_text} {field.name} = {field.number}{_bracket(options)};")
            return
        label = "" if in_oneof else self._label(field)
        if field.type == FDP.TYPE_GROUP:
            if nested is None:
                raise ValueError(f"{scope}.{field.name}: group type is not nested")
            self.emit(f"{label}group {nested.name} = {field.number}{_bracket(options)} {{")
            self.depth += 1
            self.message_body(nested, f"{scope}.{nested.name}")
            self.depth -= 1
            self.emit("}")
            return
        type_text = self._type(field, scope)
        self.emit(f"{label}{type_text} {field.name} = {field.number}{_bracket(options)};")

    def _label(self, field: descriptor_pb2.FieldDescriptorProto) -> str:
        if field.label == FDP.LABEL_REPEATED:
            return "repeated "
        if self.syntax == "proto2":
            return "required " if field.label == FDP.LABEL_REQUIRED else "optional "
        if field.label == FDP.LABEL_REQUIRED:
            raise ValueError(f"{field.name}: required field outside proto2")
        return "optional " if field.proto3_optional else ""

    def _type(self, field: descriptor_pb2.FieldDescriptorProto, scope: str) -> str:
        if field.type in _SCALAR_TYPES:
            return _SCALAR_TYPES[field.type]
        return self.symbols.relative(field.type_name, scope)

    def _field_options(self, field: descriptor_pb2.FieldDescriptorProto) -> list[str]:
        out = []
        if field.HasField("default_value"):
            out.append(f"default = {self._default(field)}")
        if field.HasField("json_name") and field.json_name != json_name_default(field.name):
            out.append(f"json_name = {quote(field.json_name)}")
        out.extend(option_assignments(field.options))
        return out

    @staticmethod
    def _default(field: descriptor_pb2.FieldDescriptorProto) -> str:
        value = field.default_value
        if field.type == FDP.TYPE_STRING:
            return quote(value)
        if field.type == FDP.TYPE_BYTES:
            return f'"{value}"'  # already C-escaped in the descriptor
        return value

    def _reserved_names(self, names: Sequence[str]) -> str:
        if self.syntax == "editions":
            return ", ".join(names)
        return ", ".join(quote(n) for n in names)

    def extensions(self, fields: Sequence[descriptor_pb2.FieldDescriptorProto], scope: str) -> None:
        for extendee, group in _runs(fields, lambda f: f.extendee):
            self.emit(f"extend {self.symbols.relative(extendee, scope)} {{")
            self.depth += 1
            for field in group:
                if field.type == FDP.TYPE_GROUP:
                    raise ValueError(f"{field.name}: group extensions are not supported")
                self.field(field, None, scope)
            self.depth -= 1
            self.emit("}")

    # -- enums and services ---------------------------------------------------------------------

    def enum(self, enum: descriptor_pb2.EnumDescriptorProto) -> None:
        self.open_block(f"enum {enum.name} {{")
        for option in option_assignments(enum.options):
            self.emit(f"option {option};")
        for value in enum.value:
            options = option_assignments(value.options)
            self.emit(f"{value.name} = {value.number}{_bracket(options)};")
        if enum.reserved_range:
            spans = [(r.start, r.end) for r in enum.reserved_range]  # inclusive for enums
            self.emit(f"reserved {_ranges(spans, _MAX_ENUM_VALUE)};")
        if enum.reserved_name:
            self.emit(f"reserved {self._reserved_names(enum.reserved_name)};")
        self.close_block()

    def service(self, service: descriptor_pb2.ServiceDescriptorProto) -> None:
        scope = _join(self.file.package, service.name)
        self.emit(f"service {service.name} {{")
        self.depth += 1
        for option in option_assignments(service.options):
            self.emit(f"option {option};")
        for method in service.method:
            request = self.symbols.relative(method.input_type, scope)
            response = self.symbols.relative(method.output_type, scope)
            if method.client_streaming:
                request = f"stream {request}"
            if method.server_streaming:
                response = f"stream {response}"
            signature = f"rpc {method.name}({request}) returns ({response})"
            options = option_assignments(method.options)
            if not options:
                self.emit(f"{signature};")
                continue
            self.emit(f"{signature} {{")
            self.depth += 1
            for option in options:
                self.emit(f"option {option};")
            self.depth -= 1
            self.emit("}")
        self.depth -= 1
        self.emit("}")


def _runs(items: Iterable[T], key: Callable[[T], K]) -> Iterator[tuple[K, list[T]]]:
    """Maximal runs of consecutive items with the same key, in order."""
    run: list[T] = []
    for item in items:
        if run and key(item) != key(run[0]):
            yield key(run[0]), run
            run = []
        run.append(item)
    if run:
        yield key(run[0]), run


def _real_oneof(field: descriptor_pb2.FieldDescriptorProto) -> int | None:
    """The index of the oneof the field is declared in; None for proto3 `optional` fields."""
    if field.HasField("oneof_index") and not field.proto3_optional:
        return field.oneof_index
    return None


def render_all(
    files: Sequence[descriptor_pb2.FileDescriptorProto], header: Sequence[str]
) -> dict[str, str]:
    """Path -> .proto text for every file of `files` that protoc does not bundle."""
    symbols = SymbolTable(files)
    return {
        file.name: FilePrinter(file, symbols).render(header)
        for file in files
        if not file.name.startswith(BUNDLED_PREFIX)
    }


def header(source: Source, version: str) -> list[str]:
    pin = f"{source.distribution}=={version}"
    return [
        f"Generated from the {pin} wheel's descriptors by `make protos`.",
        f"DO NOT EDIT. The descriptors carry no comments: see {source.see_also} for those.",
    ]


def render_sources(
    files: Mapping[Source, Sequence[descriptor_pb2.FileDescriptorProto]],
) -> dict[str, str]:
    """Path -> .proto text for every source's files, each under the header naming its pin."""
    texts: dict[str, str] = {}
    for source, source_files in files.items():
        rendered = render_all(source_files, header(source, read_pin(source)))
        clash = sorted(rendered.keys() & texts.keys())
        if clash:
            raise ValueError(f"{source.distribution} ships files another source does: {clash}")
        texts.update(rendered)
    return texts


def write_tree(out: Path, texts: dict[str, str]) -> list[Path]:
    """Write `texts` under `out`; delete .proto files left over under the same top-level dirs."""
    roots = {name.split("/", 1)[0] for name in texts}
    for root in sorted(roots):
        for stale in sorted((out / root).rglob("*.proto")):
            if stale.relative_to(out).as_posix() not in texts:
                stale.unlink()
    written = []
    for name, text in sorted(texts.items()):
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="root of the .proto tree")
    args = parser.parse_args(argv)
    for source in SOURCES:
        pinned, installed = read_pin(source), importlib.metadata.version(source.distribution)
        if installed != pinned:
            raise SystemExit(
                f"{source.distribution} {installed} is installed, {source.pin_file} pins {pinned}"
            )
    texts = render_sources({source: wheel_descriptors(source) for source in SOURCES})
    written = write_tree(args.out, texts)
    print(f"{len(texts)} files under {args.out}, {len(written)} changed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
