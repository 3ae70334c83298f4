"""The official TF Serving side of the compatibility tests, run in a subprocess.

    python -m tests.official_side descriptors OUT   # OUT/<distribution>.pb: each wheel's
                                                    # FileDescriptorSet (make protos' sources)
    python -m tests.official_side roundtrip IN OUT  # parse tfgate's bytes, build the same cases

It imports tensorflow_serving's own modules, which register the same proto names as tfgate's stubs
in the default descriptor pool: that is why it runs in a subprocess, started by `run`, the one
function here that the pytest process calls.

roundtrip reads {"cases": {name: {"type": full name, "data": base64}}} and writes
{"parsed": {name: {"data", "text", "unknown"}}, "built": {name: {"type", "data", "text"}}}.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

from scripts import protos_from_wheels
from tests import wire_cases

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> None:
    """From the pytest process: run this module in a subprocess with `args`.

    Without tensorflow-serving-api installed the calling test fails when $CI is set, and is
    skipped otherwise.
    """
    import importlib.util

    import pytest

    if importlib.util.find_spec("tensorflow_serving") is None:
        reason = "tensorflow-serving-api is not installed (pip install -e '.[local]')"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the TF Serving compatibility tests")
        pytest.skip(reason)
    result = subprocess.run(
        [sys.executable, "-m", "tests.official_side", *args],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, f"the official side failed:\n{result.stderr[-5000:]}"


def descriptors(out: Path) -> None:
    """One FileDescriptorSet per source of `make protos`, by the source's distribution name."""
    for source in protos_from_wheels.SOURCES:
        files = descriptor_pb2.FileDescriptorSet(file=protos_from_wheels.wheel_descriptors(source))
        (out / f"{source.distribution}.pb").write_bytes(files.SerializeToString())


def roundtrip(request: dict[str, dict[str, dict[str, str]]]) -> dict[str, object]:
    built = wire_cases.cases(wire_cases.load(""))
    parsed = {}
    for name, case in request["cases"].items():
        message = wire_cases.message_class(case["type"]).FromString(base64.b64decode(case["data"]))
        parsed[name] = {
            "data": base64.b64encode(wire_cases.serialize(message)).decode(),
            "text": wire_cases.text(message),
            "unknown": wire_cases.unknown_field_paths(message),
        }
    return {
        "parsed": parsed,
        "built": {
            name: {
                "type": message.DESCRIPTOR.full_name,
                "data": base64.b64encode(wire_cases.serialize(message)).decode(),
                "text": wire_cases.text(message),
            }
            for name, message in built.items()
        },
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["descriptors"] and len(argv) == 2:
        descriptors(Path(argv[1]))
    elif argv[:1] == ["roundtrip"] and len(argv) == 3:
        request = json.loads(Path(argv[1]).read_text())
        Path(argv[2]).write_text(json.dumps(roundtrip(request)))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
