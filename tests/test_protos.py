"""protos/ and gen/ hold TF Serving's own API and google/api/, as the pinned wheels ship them,
and tfgate's stubs never bring TensorFlow in.

The official descriptors come from a subprocess (tests/official_side.py): tfgate's stubs, imported
here, register the same proto names as the official modules.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, text_format

from scripts import gen, protos_from_wheels
from tests import official_side

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "gen"
FORBIDDEN_ROOTS = {"tensorflow", "tensorflow_serving", "xla"}

FileProto = descriptor_pb2.FileDescriptorProto


@pytest.fixture(scope="module")
def wheel_sources(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[protos_from_wheels.Source, list[FileProto]]:
    """Each wheel's FileDescriptorProtos, google/protobuf/* included."""
    out = tmp_path_factory.mktemp("official")
    official_side.run("descriptors", str(out))
    return {
        source: list(
            descriptor_pb2.FileDescriptorSet.FromString(
                (out / f"{source.distribution}.pb").read_bytes()
            ).file
        )
        for source in protos_from_wheels.SOURCES
    }


@pytest.fixture(scope="module")
def wheel_files(
    wheel_sources: dict[protos_from_wheels.Source, list[FileProto]],
) -> dict[str, FileProto]:
    """The wheels' FileDescriptorProtos by file name."""
    return {f.name: f for files in wheel_sources.values() for f in files}


def vendored(files: dict[str, FileProto]) -> dict[str, FileProto]:
    """Without the well-known types: protoc ships those, protos/ does not."""
    return {n: f for n, f in sorted(files.items()) if not n.startswith("google/protobuf/")}


def compile_protos(files: list[str], include: Path, out: Path) -> dict[str, FileProto]:
    from grpc_tools import protoc

    argv = [
        "grpc_tools.protoc",
        f"-I{include}",
        f"-I{gen.WELL_KNOWN_INCLUDE}",
        "--include_imports",
        f"--descriptor_set_out={out}",
        *files,
    ]
    assert protoc.main(argv) == 0, f"protoc failed on {include}"
    return {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def normalized(file: FileProto) -> FileProto:
    """Without source info, and with json_name only where it is not protoc's default."""
    file = FileProto.FromString(file.SerializeToString())
    file.ClearField("source_code_info")

    def fields(message: descriptor_pb2.DescriptorProto) -> None:
        for field in [*message.field, *message.extension]:
            if field.json_name == camel(field.name):
                field.ClearField("json_name")
        for nested in message.nested_type:
            fields(nested)

    for message in file.message_type:
        fields(message)
    for field in file.extension:
        if field.json_name == camel(field.name):
            field.ClearField("json_name")
    return file


def assert_same(ours: FileProto, theirs: FileProto) -> None:
    if normalized(ours) != normalized(theirs):
        diff = difflib.unified_diff(
            text_format.MessageToString(normalized(theirs)).splitlines(),
            text_format.MessageToString(normalized(ours)).splitlines(),
            "wheel",
            "tfgate",
            lineterm="",
        )
        pytest.fail(f"{theirs.name} differs:\n" + "\n".join(diff))


def vendored_protos() -> list[str]:
    return [f for root in gen.vendor_roots() for f in gen.proto_files(root)]


def test_protos_compile_to_the_wheel_descriptors(
    wheel_files: dict[str, FileProto], tmp_path: Path
) -> None:
    assert vendored_protos() == sorted(vendored(wheel_files))
    compiled = compile_protos(vendored_protos(), gen.PROTOS, tmp_path / "protos.pb")
    for name, theirs in vendored(wheel_files).items():
        assert_same(compiled[name], theirs)


def test_generated_modules_carry_the_wheel_descriptors(wheel_files: dict[str, FileProto]) -> None:
    for name, theirs in vendored(wheel_files).items():
        module = importlib.import_module(
            "tfgate.tfs." + name.removesuffix(".proto").replace("/", ".") + "_pb2"
        )
        assert_same(FileProto.FromString(module.DESCRIPTOR.serialized_pb), theirs)


def test_protos_are_what_make_protos_prints(
    wheel_sources: dict[protos_from_wheels.Source, list[FileProto]],
) -> None:
    """No hand edits, and each header names its pinned release."""
    texts = protos_from_wheels.render_sources(wheel_sources)
    stale = [n for n, t in sorted(texts.items()) if (gen.PROTOS / n).read_text() != t]
    assert stale == [], "run `make protos`"
    for source in protos_from_wheels.SOURCES:
        pin = f"{source.distribution}=={protos_from_wheels.read_pin(source)}"
        assert any(pin in text for text in texts.values()), pin


def test_google_api_is_vendored_from_googleapis_common_protos(
    wheel_sources: dict[protos_from_wheels.Source, list[FileProto]],
) -> None:
    names = {f.name for f in wheel_sources[protos_from_wheels.GOOGLE_API]}
    assert {"google/api/annotations.proto", "google/api/http.proto"} <= names
    assert gen.vendor_packages() == ["google.api", "tensorflow", "tensorflow_serving", "xla"]
    from tfgate.tfs.google.api import annotations_pb2, http_pb2

    assert annotations_pb2.DESCRIPTOR.package == "google.api"
    assert annotations_pb2.http.number == 72295728
    assert annotations_pb2.http.message_type is http_pb2.HttpRule.DESCRIPTOR


def test_tfgate_v1_imports_the_vendored_google_api() -> None:
    path = GEN / "tfgate" / "v1" / "inference_pb2.py"
    source = path.read_text()
    assert "\nfrom tfgate.tfs.google.api import annotations_pb2 " in source
    assert not [m for m in gen.imported_modules(source) if m.startswith("google.api")]


@pytest.mark.parametrize(
    "first, second",
    [
        ("tfgate.v1.inference_pb2", "google.api.annotations_pb2"),
        ("google.api.annotations_pb2", "tfgate.v1.inference_pb2"),
    ],
)
def test_vendored_google_api_coexists_with_the_real_one(first: str, second: str) -> None:
    """tfgate.tfs.google.api registers google/api/*.proto in the default pool, as the real
    google.api package does: the two serialized descriptors are identical, so either import
    order works and both see one `google.api.http` extension."""
    script = (
        "import importlib, sys\n"
        f"importlib.import_module({first!r}); importlib.import_module({second!r})\n"
        "from google.api import annotations_pb2 as real\n"
        "from tfgate.tfs.google.api import annotations_pb2 as ours\n"
        "from tfgate.v1 import inference_pb2\n"
        "method = inference_pb2.DESCRIPTOR.services_by_name['InferenceService']"
        ".methods_by_name['Predict']\n"
        "print(method.GetOptions().Extensions[real.http].post)\n"
        "print(real.DESCRIPTOR.serialized_pb == ours.DESCRIPTOR.serialized_pb)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["/tfgate/v1/models/{model}:predict", "True"]


def test_rewrite_imports_leaves_google_protobuf_alone() -> None:
    source = (
        "from google.api import http_pb2 as google_dot_api_dot_http__pb2\n"
        "from google.protobuf import descriptor_pb2\n"
        "import google.api.http_pb2\n"
        "x: google.api.http_pb2.HttpRule\n"
        "y = other.google.api\n"
        "_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, 'google.api.http_pb2', g)\n"
    )
    assert gen.rewrite_imports(source, ["google.api", "xla"], "tfgate.tfs") == (
        "from tfgate.tfs.google.api import http_pb2 as google_dot_api_dot_http__pb2\n"
        "from google.protobuf import descriptor_pb2\n"
        "import tfgate.tfs.google.api.http_pb2\n"
        "x: tfgate.tfs.google.api.http_pb2.HttpRule\n"
        "y = other.google.api\n"
        "_builder.BuildTopDescriptorsAndMessages(DESCRIPTOR, 'tfgate.tfs.google.api.http_pb2', g)\n"
    )


def test_method_paths_are_tf_servings() -> None:
    from tfgate.tfs.tensorflow_serving.apis import model_service_pb2, prediction_service_pb2

    predict = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"]
    model = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"]
    assert predict.full_name == "tensorflow.serving.PredictionService"
    assert {m.name for m in predict.methods} >= {"Predict", "GetModelMetadata"}
    assert model.full_name == "tensorflow.serving.ModelService"
    assert "GetModelStatus" in {m.name for m in model.methods}


def generated_sources() -> list[Path]:
    return sorted(p for p in (GEN / "tfgate").rglob("*") if p.suffix in (".py", ".pyi"))


def test_no_generated_module_imports_tensorflow() -> None:
    offenders = []
    for path in generated_sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module or ""]
            else:
                continue
            offenders += [
                f"{path.relative_to(GEN)}: {m}"
                for m in modules
                if m.split(".", 1)[0] in FORBIDDEN_ROOTS
            ]
    assert generated_sources(), "gen/ is empty: run `make gen`"
    assert offenders == []


def test_no_init_files_under_gen() -> None:
    assert list((GEN / "tfgate").rglob("__init__.py*")) == []


def test_importing_the_stubs_keeps_tensorflow_out() -> None:
    modules = [
        ".".join(p.relative_to(GEN).with_suffix("").parts)
        for p in generated_sources()
        if p.suffix == ".py"
    ]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"roots = {sorted(FORBIDDEN_ROOTS)!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in roots))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"


# -- the printer on what TF Serving's protos do not use -------------------------------------------

EXOTIC = {
    "x/two.proto": """
syntax = "proto2";
package x.two;
import "google/protobuf/descriptor.proto";
import public "x/three.proto";
option java_package = "x.y";
option optimize_for = CODE_SIZE;
message Outer {
  option deprecated = true;
  enum E {
    option allow_alias = true;
    A = 0; B = 1; C = 1 [deprecated = true];
    reserved 5 to 7, 100 to max; reserved "Q";
  }
  optional string s = 1 [default = "he\\"llo\\n\\001\\303\\251"];
  optional bytes b = 2 [default = "\\000\\377ab"];
  optional double d = 3 [default = -inf];
  optional float f = 4 [default = nan];
  optional E e = 5 [default = B];
  required int32 r = 6 [default = -7, json_name = "arr"];
  repeated group G = 8 { optional int32 x = 1; }
  map<string, Outer> m = 9;
  message Inner { optional int32 q = 1; }
  oneof o { int32 o1 = 10; group OG = 11 { optional int32 y = 1; } }
  extensions 100 to 199, 1000 to max;
  reserved 20, 30 to 40; reserved "foo", "bar";
  extend Outer { optional int32 ext_in = 100; }
  optional Inner inner = 12;
  optional uint64 big = 13 [default = 18446744073709551615, jstype = JS_STRING];
  optional x.three.Outer other = 14 [lazy = true];
}
extend google.protobuf.FieldOptions { optional int32 field_opt = 50000; }
extend Outer { repeated int32 ext_rep = 1000 [packed = true]; }
service S {
  option deprecated = true;
  rpc A(Outer) returns (stream Outer.Inner);
  rpc B(stream x.two.Outer) returns (Outer) { option idempotency_level = NO_SIDE_EFFECTS; }
}
""",
    "x/three.proto": """
syntax = "proto3";
package x.three;
message Outer {
  optional int32 x = 1;
  oneof k { string y = 2; }
  optional string z = 3;
  map<int64, Outer> w = 4;
  message Later { int32 v = 1; }
  Later later = 5;
}
enum Top { TOP_ZERO = 0; }
""",
    "x/editions.proto": """
edition = "2023";
package x.editions;
option features.field_presence = IMPLICIT;
message M {
  int32 a = 1 [features.field_presence = EXPLICIT];
  repeated int32 p = 2 [features.repeated_field_encoding = EXPANDED];
  reserved foo;
}
""",
}


def test_printer_round_trips_what_tf_serving_does_not_use(tmp_path: Path) -> None:
    source = tmp_path / "source"
    for name, text in EXOTIC.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    original = compile_protos(sorted(EXOTIC), source, tmp_path / "source.pb")
    texts = protos_from_wheels.render_all(list(original.values()), ["header"])
    assert sorted(texts) == sorted(EXOTIC)
    protos_from_wheels.write_tree(tmp_path / "printed", texts)
    printed = compile_protos(sorted(EXOTIC), tmp_path / "printed", tmp_path / "printed.pb")
    for name in EXOTIC:
        assert printed[name] == original[name], texts[name]


def test_printer_refuses_options_it_cannot_print(tmp_path: Path) -> None:
    (tmp_path / "c.proto").write_text(
        'syntax = "proto3";\nimport "google/protobuf/descriptor.proto";\n'
        "extend google.protobuf.MessageOptions { int32 mine = 50001; }\n"
        "message M { option (mine) = 3; }\n"
    )
    compiled = compile_protos(["c.proto"], tmp_path, tmp_path / "c.pb")
    with pytest.raises(ValueError, match="custom options"):
        protos_from_wheels.render_all(list(compiled.values()), [])
