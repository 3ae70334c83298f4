"""`pip install .` gives a working `tfgate` with no TensorFlow, and claims no TF package names.

The local model server (`tfgate_model_server`, TensorFlow's side) is a package of its own that
the wheel leaves out: the gateway never imports it, and it imports none of tfgate's generated
protos, which register the same names as the official ones it uses.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "server"
GATEWAY = SERVER / "tfgate"
MODEL_SERVER = SERVER / "tfgate_model_server"
MODEL_SERVER_PACKAGE = "tfgate_model_server"
GENERATED = ("tfgate.tfs", "tfgate.v1")
# What the model server takes from tfgate: pure modules that import no protos.
SHARED = {"tfgate.dtypes", "tfgate.wire"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (found,) = out.glob("tfgate-*.whl")
    return found


def test_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("tfgate-")}
    assert tops == {"tfgate"}
    # Neither the model server's package nor its old home inside tfgate.
    left_out = (f"{MODEL_SERVER_PACKAGE}/", "tfgate/model_server/")
    assert not [n for n in names if n.startswith(left_out)]
    for module in (
        "tfgate/cli.py",
        "tfgate/v1/inference_pb2.py",
        "tfgate/tfs/tensorflow_serving/apis/predict_pb2.py",
        "tfgate/tfs/tensorflow_serving/apis/prediction_service_pb2_grpc.py",
    ):
        assert module in names
    metadata = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    )
    required = [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert required, metadata
    assert not [r for r in required if r.lower().startswith("tensorflow")]


def test_installed_tfgate_runs_without_tensorflow(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=600)
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    assert not (site / "tensorflow").exists()
    assert not (site / "tensorflow_serving").exists()
    # googleapis-common-protos is a build-time dependency: tfgate.v1's google.api.http options
    # come from gen/'s own tfgate.tfs.google.api.
    probe = (
        "import sys, tfgate.app, tfgate.cli, tfgate.v1.inference_pb2; "
        "assert 'tensorflow' not in sys.modules and 'tensorflow_serving' not in sys.modules; "
        "assert 'google.api' not in sys.modules; "
        "print('ok')"
    )
    done = subprocess.run(
        [str(python), "-c", probe], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr

    # The model server is not in the wheel: `tfgate model-server` says so.
    refused = subprocess.run(
        [str(env_dir / "bin" / "tfgate"), "model-server", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    assert "model-server needs tfgate_model_server, tensorflow" in refused.stderr

    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("TFGATE_")}
    proc = subprocess.Popen(
        [
            str(env_dir / "bin" / "tfgate"),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "127.0.0.1:1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("tfgate listening on 127.0.0.1:"), line
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SERVER).with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path) -> list[tuple[str, bool]]:
    """Every module ``path`` imports, anywhere in it, each with whether the import sits inside
    a function (a lazy import) rather than at module level. ``from a import b`` yields "a.b",
    which may name a module or a name in ``a``."""
    found: list[tuple[str, bool]] = []
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name, in_function) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            found.append((base, in_function))
            found.extend((f"{base}.{alias.name}", in_function) for alias in node.names)
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def is_in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_gateway_never_imports_the_model_server() -> None:
    modules = sorted(GATEWAY.rglob("*.py"))
    assert GATEWAY / "cli.py" in modules
    lazy: list[tuple[str, str]] = []
    eager: list[tuple[str, str]] = []
    for path in modules:
        for name, in_function in imports(path):
            if is_in(name, MODEL_SERVER_PACKAGE):
                (lazy if in_function else eager).append((module_name(path), name))
    assert eager == []
    # The one exception: `tfgate model-server` hands over to the package, inside cli.main.
    assert {module for module, _ in lazy} == {"tfgate.cli"}


def test_the_gateway_loads_neither_the_model_server_nor_tensorflow() -> None:
    names = [module_name(p) for p in sorted(GATEWAY.rglob("*.py")) if p.name != "__main__.py"]
    probe = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in "
        f"({MODEL_SERVER_PACKAGE!r}, 'tensorflow', 'tensorflow_serving')]\n"
        "print(len(sys.modules), loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    count, loaded = done.stdout.split(" ", 1)
    assert int(count) > len(names)
    assert loaded.strip() == "[]"


def reachable_tfgate_modules(start: list[Path]) -> dict[str, str]:
    """The tfgate modules that ``start``'s files import, directly or through one another:
    {module: the module that first imports it}."""
    reached: dict[str, str] = {}
    pending = [(module_name(p), p) for p in start]
    while pending:
        importer, path = pending.pop()
        for name, _ in imports(path):
            if not is_in(name, "tfgate") or name == "tfgate":
                continue
            module = name
            # "tfgate.dtypes.DType" names a class of the module tfgate.dtypes.
            while module.count(".") > 1 and not _source(module) and not _generated(module):
                module = module.rpartition(".")[0]
            if module in reached:
                continue
            reached[module] = importer
            source = _source(module)
            if source is not None:
                pending.append((module, source))
    return reached


def _source(module: str) -> Path | None:
    base = SERVER.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _generated(module: str) -> bool:
    return any(is_in(module, g) for g in GENERATED)


def test_the_model_server_shares_only_pure_modules() -> None:
    modules = sorted(MODEL_SERVER.rglob("*.py"))
    assert MODEL_SERVER / "tensors.py" in modules
    reached = reachable_tfgate_modules(modules)
    generated = {m: by for m, by in reached.items() if _generated(m)}
    assert generated == {}
    assert set(reached) == SHARED


def test_the_proto_check_sees_generated_imports() -> None:
    # The check above would catch a shared module that imports tfgate's stubs: tfgate.tensors
    # does, through tfgate.tfs and tfgate.v1.
    reached = reachable_tfgate_modules([GATEWAY / "tensors.py"])
    assert any(_generated(m) for m in reached)
    assert "tfgate.dtypes" in reached
