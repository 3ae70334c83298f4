"""Generate gen/tfgate/ from protos/: protobuf modules, gRPC stubs and mypy-protobuf .pyi stubs.

    protos/tfgate/v1/inference.proto         -> tfgate.v1.inference_pb2 (+ _pb2_grpc)
    protos/tensorflow_serving/apis/x.proto   -> tfgate.tfs.tensorflow_serving.apis.x_pb2
    protos/tensorflow/core/framework/y.proto -> tfgate.tfs.tensorflow.core.framework.y_pb2
    protos/google/api/annotations.proto      -> tfgate.tfs.google.api.annotations_pb2

The vendored protos (every top-level directory of protos/ but tfgate/: TF Serving's closure and
google/api/) are generated under the `tfgate.tfs` namespace, and the generated imports, tfgate.v1's
included, are rewritten to match, so that installing tfgate never creates top-level `tensorflow`,
`tensorflow_serving`, `xla` or `google.api` packages. `google` itself is shared with the protobuf
runtime, whose `google.protobuf` imports stay as they are: only the google/<x>/ directories that
protos/ holds are renamed. The descriptors keep their file names and proto packages: the wire
format and the method paths stay TF Serving's own.
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
# Top-level directories of protos/ that name a namespace other packages share (google.protobuf is
# the protobuf runtime): their subdirectories, not they, are the vendored packages.
SHARED_NAMESPACES = {"google"}
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


def vendor_packages() -> list[str]:
    """The Python packages the vendored protos compile to, which get the VENDOR_PACKAGE prefix."""
    packages = []
    for root in vendor_roots():
        if root in SHARED_NAMESPACES:
            children = sorted(p.name for p in (PROTOS / root).iterdir() if p.is_dir())
            packages += [f"{root}.{child}" for child in children if proto_files(f"{root}/{child}")]
        else:
            packages.append(root)
    return packages


def _within(name: str, packages: Iterable[str]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in packages)


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


def rewrite_imports(source: str, packages: Iterable[str], package: str) -> str:
    """Prefix `package.` to every dotted name (outside strings) in one of `packages`, e.g.
    `google.api` in `google.api.http_pb2` but not in `google.protobuf`, and to the module name
    the generated code registers its classes under."""
    packages = set(packages)
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type not in (tokenize.NL, tokenize.COMMENT)
    ]
    edits: list[tuple[int, int]] = []  # (row, col) of names to prefix
    for i, token in enumerate(tokens):
        if token.type != tokenize.NAME:
            continue
        before = tokens[i - 1] if i else None
        if before is not None and before.string == ".":
            continue  # an attribute, not the start of a module path
        parts = [token.string]
        j = i + 1
        while (
            j + 1 < len(tokens) and tokens[j].string == "." and tokens[j + 1].type == tokenize.NAME
        ):
            parts.append(tokens[j + 1].string)
            j += 2
        # A bare name is a module only right after `import` or `from`; a dotted one always is
        # (no generated code has a variable named like a vendored package's root).
        is_module = len(parts) > 1 or (before is not None and before.string in ("import", "from"))
        if is_module and _within(".".join(parts), packages):
            edits.append(token.start)
    lines = source.splitlines(keepends=True)
    for row, col in sorted(edits, reverse=True):
        line = lines[row - 1]
        lines[row - 1] = f"{line[:col]}{package}.{line[col:]}"
    out = "".join(lines)

    def module_name(match: re.Match[str]) -> str:
        name = match.group(2)
        if _within(name, packages):
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
        vendor_out = out.joinpath(*VENDOR_PACKAGE.split("."))
        compile_tree([f for root in vendor_roots() for f in proto_files(root)], vendor_out, tmp)
        packages = vendor_packages()
        result = {}
        for path in sorted(out.rglob("*")):
            if path.is_dir():
                continue
            relative = path.relative_to(out).as_posix()
            text = rewrite_imports(path.read_bytes().decode(), packages, VENDOR_PACKAGE)
            leaked = {m for m in imported_modules(text) if _within(m, packages)}
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
