"""Version directories, version policies and base paths: TF Serving's rules, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfgate_model_server.versions import (
    All,
    Latest,
    Specific,
    is_absolute_or_uri,
    local_base_path,
    parse_version_dir,
    select_versions,
)

CHILDREN = ["1", "2", "10", "assets", "tmp-3", ".hidden"]


@pytest.mark.parametrize(
    ("name", "version"),
    [("1", 1), ("007", 7), (" 12 ", 12), ("+3", 3), ("x1", None), ("1.0", None), ("", None)],
)
def test_parse_version_dir(name: str, version: int | None) -> None:
    assert parse_version_dir(name) == version


def test_version_beyond_int64_is_not_a_version() -> None:
    assert parse_version_dir(str(2**63)) is None


@pytest.mark.parametrize(
    ("policy", "versions"),
    [
        (Latest(), [10]),
        (Latest(num_versions=0), [10]),  # TF Serving serves at least one
        (Latest(num_versions=2), [2, 10]),
        (Latest(num_versions=9), [1, 2, 10]),
        (All(), [1, 2, 10]),
        (Specific((1, 2)), [1, 2]),
    ],
)
def test_policies(policy: Latest | All | Specific, versions: list[int]) -> None:
    selection = select_versions("m", "/models/m", policy, CHILDREN)
    assert list(selection.versions) == versions
    assert selection.warnings == ()


def test_specific_versions_that_are_missing_warn() -> None:
    selection = select_versions("m", "/models/m", Specific((2, 5)), CHILDREN)
    assert selection.versions == {2: "2"}
    [warning] = selection.warnings
    assert warning.startswith("Version 5 of servable m, which was requested to be served")


def test_no_version_directories_warn() -> None:
    selection = select_versions("m", "/models/m", Latest(), ["assets", "variables"])
    assert selection.versions == {}
    [warning] = selection.warnings
    assert "No versions of servable m found under base path /models/m" in warning


def test_duplicate_version_directories_keep_the_last_name() -> None:
    selection = select_versions("m", "/models/m", All(), ["01", "1"])
    assert selection.versions == {1: "1"}
    assert "Duplicate version directories detected" in selection.warnings[0]


def test_empty_specific_policy_warns() -> None:
    selection = select_versions("m", "/models/m", Specific(()), CHILDREN)
    assert selection.versions == {}
    assert selection.warnings == ("No specific versions requested for servable m.",)


@pytest.mark.parametrize(
    ("base_path", "expected"),
    [
        ("/models/half_plus_two", "root/half_plus_two"),
        ("/models", "root"),
        ("/models/a/b", "root/a/b"),
        ("/modelsx/a", "/modelsx/a"),
        ("/srv/models/a", "/srv/models/a"),
    ],
)
def test_local_base_path(base_path: str, expected: str) -> None:
    assert local_base_path(base_path, Path("root")) == Path(expected)


def test_uris_are_not_local() -> None:
    with pytest.raises(ValueError, match="only local paths"):
        local_base_path("s3://bucket/m", Path("root"))


@pytest.mark.parametrize(
    ("base_path", "accepted"),
    [("/models/m", True), ("gs://b/m", True), ("models/m", False), ("m", False)],
)
def test_base_paths_tf_serving_accepts(base_path: str, accepted: bool) -> None:
    assert is_absolute_or_uri(base_path) is accepted
