"""API keys: the operator's key file, and the constant-time lookup of a presented key.

The file names each client's keys by their SHA-256 digest only (``tfgate hash-key`` prints
one); a client may have several, so that a key can be replaced without a gap::

    [keys.reports]
    sha256 = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]

A presented key is hashed and compared with ``hmac.compare_digest``. Digests are grouped by
their first bytes so that a call compares against a few, not all: timing can then tell at
most whether some digest shares a prefix with the digest of a key the caller chose, which says
nothing about any key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from pathlib import Path
from typing import Final

from tfgate.config import ConfigError

_HEX: Final = re.compile(r"[0-9a-f]{64}")
_PREFIX: Final = 2


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyTable:
    """Digest -> client, looked up in constant time per candidate."""

    def __init__(self, digests: dict[bytes, str]) -> None:
        self._buckets: dict[bytes, list[tuple[bytes, str]]] = {}
        for value, client in digests.items():
            self._buckets.setdefault(value[:_PREFIX], []).append((value, client))

    def __len__(self) -> int:
        return sum(map(len, self._buckets.values()))

    def client_of(self, key: str) -> str | None:
        """The client whose key ``key`` is, or None."""
        presented = digest(key)
        found = None
        for value, client in self._buckets.get(presented[:_PREFIX], ()):
            if hmac.compare_digest(value, presented):
                found = client
        return found


def parse_keys(text: str, source: str) -> KeyTable:
    """The key table in ``text`` (TOML); a ConfigError names ``source`` and the client, never
    a digest."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"keys file {source}: {exc}") from None
    unknown = set(data) - {"keys"}
    if unknown:
        raise ConfigError(f"keys file {source}: {sorted(unknown)[0]}: unknown table")
    table = data.get("keys", {})
    if not isinstance(table, dict):
        raise ConfigError(f"keys file {source}: [keys] must hold [keys.CLIENT] tables")
    digests: dict[bytes, str] = {}
    for client, entry in table.items():
        where = f"keys file {source}: keys.{client}"
        if not isinstance(entry, dict) or set(entry) != {"sha256"}:
            raise ConfigError(f"{where}: expected exactly one setting, sha256")
        raw = entry["sha256"]
        values = [raw] if isinstance(raw, str) else raw
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.sha256: expected a hex digest or a list of them")
        for n, value in enumerate(values):
            if not isinstance(value, str) or not _HEX.fullmatch(value.lower()):
                raise ConfigError(
                    f"{where}.sha256[{n}]: expected 64 hex digits (tfgate hash-key prints them)"
                )
            key = bytes.fromhex(value)
            other = digests.setdefault(key, client)
            if other != client:
                raise ConfigError(f"{where}.sha256[{n}]: the same digest is a key of {other}")
    return KeyTable(digests)


def load_keys(path: str) -> KeyTable:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"auth.keys_file {path}: {exc.strerror or exc}") from None
    return parse_keys(text, path)
