"""Which versions of a model to serve, and where they are: TF Serving's rules, without I/O.

TF Serving lists the children of a model's base path, keeps those whose name parses as an
integer (``absl::SimpleAtoi``: "7", "007", " 7"), and aspires to the versions its version
policy selects (``FileSystemStoragePathSource``):

- ``latest {num_versions: N}`` (the default, N >= 1): the N highest versions;
- ``all {}``: every version;
- ``specific {versions: ...}``: the listed versions that exist, warning about the others.

Base paths: real TF Serving requires absolute base paths, and docker-compose.yml mounts
models/ at /models, so models.config says ``/models/NAME``. The local server reads a base path
under ``/models`` relative to its models root (by default the directory holding the config
file, which is models/ itself); other absolute paths are used as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MOUNT_POINT = PurePosixPath("/models")

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_VERSION_DIR = re.compile(r"\s*[+-]?\d+\s*")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class Latest:
    num_versions: int = 1


@dataclass(frozen=True)
class All:
    pass


@dataclass(frozen=True)
class Specific:
    versions: tuple[int, ...]


VersionPolicy = Latest | All | Specific


@dataclass(frozen=True)
class Selection:
    """The versions to load (version -> directory name) and what to warn about."""

    versions: dict[int, str]
    warnings: tuple[str, ...] = ()


def parse_version_dir(name: str) -> int | None:
    """The version a directory name stands for, or None if it is not a version directory."""
    if not _VERSION_DIR.fullmatch(name):
        return None
    version = int(name)
    return version if _INT64_MIN <= version <= _INT64_MAX else None


def select_versions(
    model: str, base_path: str, policy: VersionPolicy, children: Iterable[str]
) -> Selection:
    """Applies ``policy`` to the names found in a model's base path."""
    by_version: dict[int, str] = {}
    warnings: list[str] = []
    for child in sorted(children):
        version = parse_version_dir(child)
        if version is None:
            continue
        if version in by_version:
            warnings.append(
                f"Duplicate version directories detected. Version {version} will be loaded "
                f"from {child}, {by_version[version]} will be ignored."
            )
        by_version[version] = child

    if isinstance(policy, Latest):
        chosen = sorted(by_version, reverse=True)[: max(policy.num_versions, 1)]
    elif isinstance(policy, All):
        chosen = list(by_version)
    else:
        if not policy.versions:
            warnings.append(f"No specific versions requested for servable {model}.")
        chosen = [v for v in policy.versions if v in by_version]
        warnings.extend(
            f"Version {v} of servable {model}, which was requested to be served as a "
            "'specific' version in the servable's version policy, was not found in the "
            "file system"
            for v in policy.versions
            if v not in by_version
        )
    if not by_version:
        warnings.append(
            f"No versions of servable {model} found under base path {base_path}. Did you "
            "forget to name your leaf directory as a number (eg. '/1/')?"
        )
    return Selection({v: by_version[v] for v in sorted(chosen)}, tuple(warnings))


def is_absolute_or_uri(base_path: str) -> bool:
    """TF Serving's test for a base path it accepts without a config root dir."""
    return bool(_URI.match(base_path)) or base_path.startswith("/")


def local_base_path(base_path: str, models_root: Path) -> Path:
    """Where the local server finds a model whose config says ``base_path``.

    Raises ValueError for a URI (gs://, s3://, ...): the local server reads local files only.
    """
    if _URI.match(base_path):
        raise ValueError(f"only local paths are supported, got base_path {base_path}")
    path = PurePosixPath(base_path)
    if path == MOUNT_POINT or MOUNT_POINT in path.parents:
        return models_root.joinpath(*path.relative_to(MOUNT_POINT).parts)
    return Path(base_path)
