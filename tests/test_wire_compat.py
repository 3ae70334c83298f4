"""tfgate's TF Serving stubs and the official tensorflow_serving classes agree on the wire.

Every message tfgate sends to TF Serving or reads from it (tests/wire_cases.py) is built here with
tfgate's stubs and parsed in a subprocess by the official classes, and built there with the
official classes and parsed here by tfgate's: no unknown fields either way, the same bytes when
re-serialized, the same text_format dump field for field.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests import official_side, wire_cases

TFGATE = wire_cases.load("tfgate.tfs.")
CASES = wire_cases.cases(TFGATE)


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One subprocess for every case: importing TensorFlow takes seconds."""
    tmp = tmp_path_factory.mktemp("wire")
    request = {
        "cases": {
            name: {
                "type": message.DESCRIPTOR.full_name,
                "data": base64.b64encode(wire_cases.serialize(message)).decode(),
            }
            for name, message in CASES.items()
        }
    }
    (tmp / "in.json").write_text(json.dumps(request))
    official_side.run("roundtrip", str(tmp / "in.json"), str(tmp / "out.json"))
    result: dict[str, Any] = json.loads((tmp / "out.json").read_text())
    return result


@pytest.mark.parametrize("name", sorted(CASES))
def test_official_parses_tfgate_bytes(official: dict[str, Any], name: str) -> None:
    ours = CASES[name]
    theirs = official["parsed"][name]
    assert theirs["unknown"] == []
    assert base64.b64decode(theirs["data"]) == wire_cases.serialize(ours)
    assert theirs["text"] == wire_cases.text(ours)


@pytest.mark.parametrize("name", sorted(CASES))
def test_tfgate_parses_official_bytes(official: dict[str, Any], name: str) -> None:
    theirs = official["built"][name]
    data = base64.b64decode(theirs["data"])
    assert theirs["type"] == CASES[name].DESCRIPTOR.full_name
    parsed = type(CASES[name]).FromString(data)
    assert wire_cases.unknown_field_paths(parsed) == []
    assert wire_cases.serialize(parsed) == data
    assert wire_cases.text(parsed) == theirs["text"]
    assert parsed == CASES[name]


def test_official_builds_the_same_cases(official: dict[str, Any]) -> None:
    assert sorted(official["built"]) == sorted(CASES)


def test_cases_use_tfgate_stubs() -> None:
    """The classes under test are tfgate's own, not TF Serving's under another name."""
    for message in CASES.values():
        assert type(message).__module__.startswith("tfgate.tfs.")


def test_text_dump_expands_any() -> None:
    """The metadata's SignatureDefMap is compared field by field, not as opaque bytes."""
    dump = wire_cases.text(CASES["GetModelMetadataResponse"])
    assert "[type.googleapis.com/tensorflow.serving.SignatureDefMap]" in dump
    assert "unknown_rank: true" in dump
    assert "size: -1" in dump
