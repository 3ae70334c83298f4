"""tests/log_secrets.py fails a run whose log holds a remembered secret, and passes one whose
log does not: run on a small test file of its own, in a pytest process of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.model_server_fixtures import ROOT

PROBE = """
import logging
from tests.log_secrets import remember

SECRET = remember("s3cret-value-{tag}")

def test_logs() -> None:
    logging.getLogger("tfgate.probe").debug("{line}", SECRET)
"""


def run_probe(folder: Path, line: str) -> subprocess.CompletedProcess[str]:
    probe = folder / "test_probe.py"
    probe.write_text(PROBE.format(tag=folder.name, line=line), encoding="utf-8")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.log_secrets",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(folder),
            "-c",
            "/dev/null",
            str(probe),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("line", "leaks"), [("token %s", True), ("token %.3s...", False)])
def test_a_secret_in_any_log_line_fails_the_run(tmp_path: Path, line: str, leaks: bool) -> None:
    done = run_probe(tmp_path, line)
    if leaks:
        assert done.returncode == 1, done.stdout + done.stderr
        assert "1 secrets found in the run's log" in done.stdout, done.stdout
        assert f"s3cret-value-{tmp_path.name}" not in done.stdout  # named, not shown
    else:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "1 secrets, none in the run's 1 log lines" in done.stdout, done.stdout
