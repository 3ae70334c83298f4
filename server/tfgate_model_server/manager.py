"""Every loaded model version, and which one a ModelSpec asks for.

Resolution follows ``ServerCore::ServableRequestFromModelSpec``: ``version`` asks for that
version, ``version_label`` for the version the config's label names, neither for the highest
loaded version. ``version`` and ``version_label`` are a proto oneof, so a request cannot carry
both: whichever the client set last is the one on the wire.

Everything is loaded once at start-up, as TF Serving does before it opens its port; the local
server does not poll the file system or the config afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfgate_model_server.config import ModelConfig
from tfgate_model_server.errors import InvalidArgument, NotFound
from tfgate_model_server.servable import Servable

logger = logging.getLogger(__name__)

AVAILABLE = "AVAILABLE"


@dataclass(frozen=True)
class VersionState:
    """What GetModelStatus reports for one version (ModelVersionStatus)."""

    version: int
    state: str
    error_code: int = 0
    error_message: str = ""


class ServableManager:
    def __init__(
        self,
        servables: Mapping[str, Mapping[int, Servable]],
        labels: Mapping[str, Mapping[str, int]],
    ) -> None:
        self._servables = servables
        self._labels = labels

    @classmethod
    def load(
        cls, models: Sequence[ModelConfig], plan: Mapping[str, Mapping[int, Path]]
    ) -> ServableManager:
        """Loads every version in ``plan`` (see config.plan_versions); fails on any error."""
        servables: dict[str, dict[int, Servable]] = {}
        for name, versions in plan.items():
            servables[name] = {}
            for version, path in versions.items():
                servables[name][version] = Servable.load(name, version, path)
                logger.info("loaded model %s version %d from %s", name, version, path)
        labels = {m.name: dict(m.version_labels) for m in models}
        for name, model_labels in labels.items():
            for label, version in sorted(model_labels.items()):
                logger.info("model %s: label %r -> version %d", name, label, version)
        return cls(servables, labels)

    def resolve_request(self, request: Any) -> Servable:
        """The servable a request's model_spec names; the spec is required."""
        if not request.HasField("model_spec"):
            raise InvalidArgument("Missing ModelSpec")
        return self.resolve(request.model_spec)

    def resolve(self, model_spec: Any) -> Servable:
        """The servable a request's ModelSpec names, with TF Serving's errors."""
        name = str(model_spec.name)
        if not name:
            raise InvalidArgument("ModelSpec has no name specified.")
        versions = self._servables.get(name, {})
        choice = model_spec.WhichOneof("version_choice")
        if choice == "version_label":
            label = str(model_spec.version_label)
            version = self._labels.get(name, {}).get(label)
            if version is None:
                raise InvalidArgument(f"Unrecognized servable version label: {label}")
            return self._specific(name, version, versions)
        if choice == "version":
            return self._specific(name, int(model_spec.version.value), versions)
        if not versions:
            raise NotFound(f"Servable not found for request: Latest({name})")
        return versions[max(versions)]

    @staticmethod
    def _specific(name: str, version: int, versions: Mapping[int, Servable]) -> Servable:
        servable = versions.get(version)
        if servable is None:
            raise NotFound(f"Servable not found for request: Specific({name}, {version})")
        return servable

    def states(self, name: str, version: int | None = None) -> list[VersionState]:
        """GetModelStatus: one version's state, or every version's."""
        versions = self._servables.get(name, {})
        if version is not None:
            if version not in versions:
                raise NotFound(f"Could not find version {version} of model {name}")
            return [VersionState(version, AVAILABLE)]
        if not versions:
            raise NotFound(f"Could not find any versions of model {name}")
        return [VersionState(v, AVAILABLE) for v in sorted(versions)]

    def describe(self) -> str:
        return ", ".join(f"{name} {sorted(v)}" for name, v in self._servables.items())

    def close(self) -> None:
        for versions in self._servables.values():
            for servable in versions.values():
                servable.close()
