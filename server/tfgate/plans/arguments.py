"""One table of a ``[models.NAME]`` section, read by type, and the error its problems raise.

A Table is what a step's ``from_config`` reads (tfgate.plans.steps.Arguments), and what
tfgate.plans.config reads a section's own keys with. It remembers the keys asked for, so that
``finish`` can name a key nobody asked for, with the ones that are known.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from tfgate.config import ConfigError
from tfgate.plans.steps import Array, channel_values


class PipelineConfigError(ConfigError):
    """A ``[models.NAME]`` section cannot work; the message names the file, model and tensor."""


_MISSING: Final = object()


class Table:
    """One table: typed reads, and a complaint about keys nobody asked for."""

    def __init__(self, table: Mapping[str, object], where: str, base: Path) -> None:
        self._table = table
        self._asked: list[str] = []
        self.where = where
        self.base = base

    def error(self, problem: str) -> PipelineConfigError:
        return PipelineConfigError(f"{self.where}: {problem}")

    def has(self, key: str) -> bool:
        self._asked.append(key)
        return key in self._table

    def raw(self, key: str, default: object = _MISSING) -> object:
        self._asked.append(key)
        value = self._table.get(key, default)
        if value is _MISSING:
            raise self.error(f"'{key}' is required")
        return value

    def string(self, key: str, default: object = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is not default and not isinstance(value, str):
            raise self.error(f"'{key}' must be a string, got {value!r}")
        return value

    def integer(self, key: str, default: object = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is not default and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.error(f"'{key}' must be an integer, got {value!r}")
        return value

    def number(self, key: str) -> float | None:
        value = self.raw(key, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise self.error(f"'{key}' must be a number, got {value!r}")
        return None if value is None else float(value)

    def channels(self, key: str, default: object = _MISSING) -> Array:
        value = self.raw(key, default)
        if not _numbers(value):
            raise self.error(f"'{key}' must be a number or a list of numbers, got {value!r}")
        try:
            return channel_values(key, value)  # type: ignore[arg-type]
        except ValueError as exc:
            raise self.error(str(exc)) from None

    def shape(self, key: str) -> tuple[int, ...]:
        value = self.raw(key)
        if not isinstance(value, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in value
        ):
            raise self.error(f"'{key}' must be a list of integers, got {value!r}")
        return tuple(value)

    def path(self, shown: str) -> Path:
        """A file named in the config, relative to the config file's directory."""
        return Path(os.path.normpath(self.base / shown))

    def lines(self, key: str) -> tuple[str, list[str]]:
        """The file named by ``key`` (relative to the config file), as its non-empty lines."""
        shown = self.string(key)
        path = self.path(shown)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise self.error(f"file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise self.error(f"file {path}: not UTF-8 text ({exc.reason})") from None
        lines = [line.removesuffix("\r") for line in text.split("\n")]
        if lines and lines[-1] == "":
            lines.pop()
        if not lines:
            raise self.error(f"file {path} is empty")
        for number, line in enumerate(lines, 1):
            if not line:
                raise self.error(f"file {path}: line {number} is empty")
        return shown, lines

    def finish(self) -> None:
        unknown = sorted(set(self._table) - set(self._asked) - {"op"})
        if unknown:
            known = ", ".join(sorted(set(self._asked))) or "none"
            raise self.error(f"unknown parameter '{unknown[0]}' (parameters: {known})")


def _numbers(value: object) -> bool:
    items = value if isinstance(value, list) else [value]
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in items)
