"""Reads TF Serving's model config file: a text-format ``tensorflow.serving.ModelServerConfig``.

The file is parsed with the official, pinned ``model_server_config.proto`` and checked the way
TF Serving's ``ServerCore`` checks it, with its messages, so that a file the local server
accepts is one real TF Serving accepts too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tfgate_model_server.errors import StartupError
from tfgate_model_server.versions import (
    All,
    Latest,
    Specific,
    VersionPolicy,
    is_absolute_or_uri,
    local_base_path,
    select_versions,
)

logger = logging.getLogger(__name__)

TENSORFLOW_PLATFORM = "tensorflow"


@dataclass(frozen=True)
class ModelConfig:
    """One ``model_config_list.config`` entry."""

    name: str
    base_path: str  # as the config file says
    local_path: Path  # where this server reads it
    policy: VersionPolicy
    version_labels: Mapping[str, int] = field(default_factory=dict)


def load_model_config(path: Path, models_root: Path | None = None) -> tuple[ModelConfig, ...]:
    """Parses and checks the model config file.

    ``models_root`` is where base paths under /models are read from; None means the directory
    holding the config file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StartupError(f"Cannot read model config file {path}: {exc}") from exc
    config: Any = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        # TF Serving's words: protobuf's text parser logs the first line, ParseProtoTextFile
        # fails with the second.
        raise StartupError(
            f"Error parsing text-format {config.DESCRIPTOR.full_name}: {exc}\n"
            f"Invalid protobuf file: '{path}'"
        ) from exc

    kind = config.WhichOneof("config")
    if kind is None:
        logger.warning("model config file %s lists no models", path)
        return ()
    if kind != "model_config_list":
        raise StartupError(f"{path}: custom_model_config is not supported; use model_config_list")
    root = models_root if models_root is not None else path.resolve().parent
    return _check(config.model_config_list.config, root)


def plan_versions(models: Sequence[ModelConfig]) -> dict[str, dict[int, Path]]:
    """The version directories each model's policy selects on disk: model -> version -> dir.

    Fails as TF Serving does on a missing base path, and on a version label naming a version
    that will not be served ("not currently available for inference").
    """
    plan: dict[str, dict[int, Path]] = {}
    for model in models:
        try:
            children = os.listdir(model.local_path)
        except OSError as exc:
            raise StartupError(
                f"Could not find base path {model.local_path} for servable {model.name} "
                f"with error {exc}"
            ) from exc
        selection = select_versions(model.name, str(model.local_path), model.policy, children)
        for warning in selection.warnings:
            logger.warning("%s", warning)
        plan[model.name] = {v: model.local_path / d for v, d in selection.versions.items()}
        for version in model.version_labels.values():
            if version not in plan[model.name]:
                raise StartupError(
                    f"Request to assign label to version {version} of model {model.name}, "
                    "which is not currently available for inference"
                )
    return plan


def _check(entries: Any, models_root: Path) -> tuple[ModelConfig, ...]:
    models: list[ModelConfig] = []
    names: set[str] = set()
    for entry in entries:
        name = str(entry.name)
        if name in names:
            raise StartupError(f"Illegal to list model {name} multiple times in config list")
        names.add(name)
        base_path = str(entry.base_path)
        if not is_absolute_or_uri(base_path):
            raise StartupError(
                f"Expected model {name} to have an absolute path or URI; got "
                f"base_path()={base_path}"
            )
        _check_platform(entry)
        if entry.HasField("logging_config"):
            logger.warning("model %s: logging_config is ignored by the local server", name)
        try:
            local_path = local_base_path(base_path, models_root)
        except ValueError as exc:
            raise StartupError(f"model {name}: {exc}") from exc
        models.append(
            ModelConfig(
                name=name,
                base_path=base_path,
                local_path=local_path,
                policy=_policy(entry.model_version_policy),
                version_labels={str(k): int(v) for k, v in entry.version_labels.items()},
            )
        )
    return tuple(models)


def _check_platform(entry: Any) -> None:
    if entry.model_type != 0:  # the deprecated ModelType field
        if entry.model_platform:
            raise StartupError(
                "Illegal setting both ModelServerConfig::model_type (deprecated) and "
                f"ModelServerConfig::model_platform, model name is {entry.name}"
            )
        platform = TENSORFLOW_PLATFORM if entry.model_type == 1 else ""
        if not platform:
            raise StartupError(
                f"ModelServerConfig::model_type choice {entry.model_type} not supported."
            )
    else:
        platform = str(entry.model_platform)
    if not platform:
        raise StartupError(
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
            f"ModelServerConfig::model_platform, model name is {entry.name}"
        )
    if platform != TENSORFLOW_PLATFORM:
        raise StartupError(f"PlatformConfigMap has no entry for platform {platform}")


def _policy(policy: Any) -> VersionPolicy:
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return All()
    if choice == "specific":
        return Specific(tuple(int(v) for v in policy.specific.versions))
    if choice == "latest":
        return Latest(int(policy.latest.num_versions))
    return Latest()
