"""What each client may call: its methods, and the models its patterns match (fnmatch,
case-sensitive, each compiled once into one regular expression per client)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence

from tfgate.errors import PermissionDenied
from tfgate.policy.config import ClientRights


class Rights:
    def __init__(self, clients: Mapping[str, ClientRights]) -> None:
        self._methods = {name: frozenset(r.methods) for name, r in clients.items()}
        self._models = {
            name: re.compile("|".join(fnmatch.translate(p) for p in r.models) or r"(?!)")
            for name, r in clients.items()
        }

    def check(self, client: str, method: str, models: Sequence[str]) -> None:
        """PermissionDenied naming the model and method unless ``client`` may call ``method``
        on every one of ``models``; a client without a [clients.NAME] section may call nothing."""
        methods = self._methods.get(client, frozenset())
        pattern = self._models.get(client)
        for model in models:
            if method not in methods or pattern is None or pattern.match(model) is None:
                raise PermissionDenied(f"client {client} may not call {method} on model {model!r}")
