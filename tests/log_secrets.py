"""A pytest plugin: no log line of the whole test run may hold a key, token or secret.

Tests name each secret they make with ``remember(secret)``. Every record of every logger in the
test process goes to one file (tfgate's loggers at DEBUG, so that no line is skipped by its
level), and when the run ends the file is searched for every secret remembered: one found fails
the run, naming the test files' secret by its first characters only.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pytest

_SECRETS: set[str] = set()
_state: dict[str, object] = {}
# Secrets shorter than this could turn up in a log by chance (and a word is no secret).
MIN_SECRET = 12


def remember(secret: str | bytes) -> str:
    """Registers ``secret`` (a key, a token, a secret's text); returns it as text."""
    text = secret.decode() if isinstance(secret, bytes) else secret
    if len(text) >= MIN_SECRET:
        _SECRETS.add(text)
    return text


def leaked(text: str) -> list[str]:
    """The remembered secrets ``text`` holds, each shown by its first 6 characters."""
    return sorted(
        f"{secret[:6]}... ({len(secret)} characters)" for secret in _SECRETS if secret in text
    )


def pytest_configure(config: pytest.Config) -> None:
    folder = Path(tempfile.mkdtemp(prefix="tfgate-test-log-"))
    path = folder / "all.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger("tfgate").setLevel(logging.DEBUG)
    _state.update(path=path, handler=handler)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    handler = _state.get("handler")
    path = _state.get("path")
    if not isinstance(handler, logging.FileHandler) or not isinstance(path, Path):
        return
    logging.getLogger().removeHandler(handler)
    handler.close()
    text = path.read_text(encoding="utf-8", errors="replace")
    found = leaked(text)
    lines = text.count("\n")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if found:
        message = f"log_secrets: {len(found)} secrets found in the run's log ({path}): {found}"
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        message = f"log_secrets: {len(_SECRETS)} secrets, none in the run's {lines} log lines"
        path.unlink()
        path.parent.rmdir()
    if reporter is not None:
        reporter.write_line(message)
