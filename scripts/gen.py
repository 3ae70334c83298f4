"""Generate gen/tfgate/ from protos/: protobuf modules, gRPC stubs and mypy-protobuf .pyi stubs.

    protos/tfgate/v1/inference.proto         -> tfgate.v1.inference_pb2 (+ _pb2_grpc)
    protos/tensorflow_serving/apis/x.proto   -> tfgate.tfs.tensorflow_serving.apis.x_pb2
    protos/tensorflow/core/framework/y.proto -> tfgate.tfs.tensorflow.core.framework.y_pb2

The TF Serving closure (every top-level directory of protos/ but tfgate/) is generated under the
`tfgate.tfs` namespace, and the generated imports are rewritten to match, so that installing tfgate
never creates top-level `tensorflow`, `tensorflow_serving` or `xla` packages. The descriptors keep
their file names and proto packages: the wire format and the method paths stay TF Serving's own.
gRPC stubs are generated only for files that define services. No __init__.py anywhere: `tfgate` is
a namespace package joined from server/ and gen/.

With --check nothing is written; the exit status is 1, with the files listed, when gen/ differs
from what would be generated.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import shutil
import sys
import tempfile
import tokenize
from collections.abc import Iterable, Sequence
from pathlib import Path

import grpc_tools
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GEN = ROOT / "gen"
DOMAIN = "tfgate"  # protos/tfgate/ -> gen/tfgate/
VENDOR_PACKAGE = "tfgate.tfs"  # everything else in protos/ -> gen/tfgate/tfs/
WELL_KNOWN_INCLUDE = Path(grpc_tools.__file__).parent / "_proto"
# The venv's bin directory; not resolved, since a venv's python is a symlink out of it.
BIN = Path(sys.executable).parent
IGNORED_DIRS = {"__pycache__"}


def run_protoc(args: Sequence[str]) -> None:
    argv = ["grpc_tools.protoc", f"-I{PROTOS}", f"-I{WELL_KNOWN_INCLUDE}", *args]
    if protoc.main(argv) != 0:
        raise SystemExit(f"protoc failed: {' '.join(argv)}")


def proto_files(root: str) -> list[str]:
    """The .proto files under protos/<root>/, as import paths, sorted."""
    return sorted(p.relative_to(PROTOS).as_posix() for p in (PROTOS / root).rglob("*.proto"))


def vendor_roots() -> list[str]:
    return sorted(
        p.name for p in PROTOS.iterdir() if p.is_dir() and p.name != DOMAIN and proto_files(p.name)
    )


def files_with_services(files: Sequence[str], tmp: Path) -> list[str]:
    descriptor_set = tmp / "services.pb"
    run_protoc([f"--descriptor_set_out={descriptor_set}", *files])
    parsed = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    descriptor_set.unlink()
    return [f.name for f in parsed.file if f.service]


def compile_tree(files: Sequence[str], out: Path, tmp: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    run_protoc(
        [
            f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
            f"--python_out={out}",
            f"--mypy_out=quiet:{out}",
            *files,
        ]
    )
    services = files_with_services(files, tmp)
    if services:
        run_protoc(
            [
                f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
                f"--grpc_python_out={out}",
                f"--mypy_grpc_out=quiet:{out}",
                *services,
            ]
        )


_MODULE_NAME = re.compile(r"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, ')([\w.]+)(')")


def rewrite_imports(source: str, roots: Iterable[str], package: str) -> str:
    """Prefix `package.` to every dotted name starting with one of `roots` (outside strings),
    and to the module name the generated code registers its classes under."""
    roots = set(roots)
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type not in (tokenize.NL, tokenize.COMMENT)
    ]
    edits: list[tuple[int, int]] = []  # (row, col) of names to prefix
    for i, token in enumerate(tokens):
        if token.type != tokenize.NAME or token.string not in roots:
            continue
        before = tokens[i - 1] if i else None
        after = tokens[i + 1] if i + 1 < len(tokens) else None
        if before is not None and before.string == ".":
            continue  # an attribute, not the start of a module path
        if (after is not None and after.string == ".") or (
            before is not None and before.string in ("import", "from")
        ):
            edits.append(token.start)
    lines = source.splitlines(keepends=True)
    for row, col in sorted(edits, reverse=True):
        line = lines[row - 1]
        lines[row - 1] = f"{line[:col]}{package}.{line[col:]}"
    out = "".join(lines)

    def module_name(match: re.Match[str]) -> str:
        name = match.group(2)
        if name.split(".", 1)[0] in roots:
            name = f"{package}.{name}"
        return f"{match.group(1)}{name}{match.group(3)}"

    return _MODULE_NAME.sub(module_name, out)


def imported_modules(source: str) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def generate() -> dict[str, bytes]:
    """Every file gen/ should hold, by path relative to gen/."""
    with tempfile.TemporaryDirectory(prefix="tfgate-gen-") as tmp_name:
        tmp = Path(tmp_name)
        out = tmp / "out"
        compile_tree(proto_files(DOMAIN), out, tmp)
        roots = vendor_roots()
        vendor_out = out.joinpath(*VENDOR_PACKAGE.split("."))
        compile_tree([f for root in roots for f in proto_files(root)], vendor_out, tmp)
        result = {}
        for path in sorted(out.rglob("*")):
            if path.is_dir():
                continue
            relative = path.relative_to(out).as_posix()
            data = path.read_bytes()
            if path.is_relative_to(vendor_out):
                text = rewrite_imports(data.decode(), roots, VENDOR_PACKAGE)
                leaked = {m for m in imported_modules(text) if m.split(".", 1)[0] in roots}
                if leaked:
                    raise SystemExit(f"{relative}: imports left unrewritten: {sorted(leaked)}")
                data = text.encode()
            result[relative] = data
        return result


def existing() -> dict[str, bytes]:
    found = {}
    for path in sorted((GEN / DOMAIN).rglob("*")):
        if path.is_dir() or IGNORED_DIRS.intersection(path.relative_to(GEN).parts):
            continue
        found[path.relative_to(GEN).as_posix()] = path.read_bytes()
    return found


def diff(wanted: dict[str, bytes], have: dict[str, bytes]) -> list[str]:
    out = []
    for name in sorted(wanted.keys() | have.keys()):
        if name not in have:
            out.append(f"missing: gen/{name}")
        elif name not in wanted:
            out.append(f"extra:   gen/{name}")
        elif wanted[name] != have[name]:
            out.append(f"differs: gen/{name}")
    return out


def write(wanted: dict[str, bytes], have: dict[str, bytes]) -> None:
    for name in sorted(have.keys() - wanted.keys()):
        (GEN / name).unlink()
    for name, data in sorted(wanted.items()):
        if have.get(name) != data:
            path = GEN / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    # Directories left without generated files go, __pycache__ and all.
    for directory in sorted((GEN / DOMAIN).rglob("*"), reverse=True):
        if directory.is_dir() and directory.name not in IGNORED_DIRS:
            files = [f for f in directory.rglob("*") if f.is_file()]
            if all(IGNORED_DIRS.intersection(f.relative_to(GEN).parts) for f in files):
                shutil.rmtree(directory)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if gen/ is not up to date")
    args = parser.parse_args(argv)
    wanted = generate()
    have = existing()
    changes = diff(wanted, have)
    if args.check:
        if changes:
            print("gen/ is not what `make gen` would write:", *changes, sep="\n  ", file=sys.stderr)
            return 1
        return 0
    write(wanted, have)
    print(f"gen/: {len(wanted)} files, {len(changes)} changed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
