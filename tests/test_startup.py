"""What a start imports: tfgate without [models.NAME] sections loads no preprocessing, and
tenacity waits for the first failed backend call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tfgate import cli

_LAZY = (
    "tenacity",
    "tfgate.backends.retry",
    "tfgate.plans.bind",
    "tfgate.plans.arguments",
    "tfgate.plans.config",
    "tfgate.plans.steps",
    "tfgate.plans.steps.base",
    "tfgate.plans.steps.labels",
    "tfgate.plans.steps.numeric",
    "tfgate.plans.steps.shape",
    "tfgate.plans.steps.text",
)


def _imported_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {_LAZY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.split()


def test_a_plain_start_imports_no_preprocessing_and_no_tenacity() -> None:
    assert _imported_after("import tfgate.cli, tfgate.app, tfgate.fronts.grpc") == []


def test_the_lazy_modules_are_importable_and_load_what_they_need() -> None:
    assert _imported_after("import tfgate.backends.retry, tfgate.plans.bind") == list(_LAZY)


def test_pipelines_only_for_a_file_with_model_sections(tmp_path: Path) -> None:
    assert cli._plans(None, {})._sections == {}
    assert cli._plans(str(tmp_path / "tfgate.toml"), {"listen": "127.0.0.1:0"})._sections == {}
    found = cli._plans(str(tmp_path / "tfgate.toml"), {"models": {"m": {"inputs": {}}}})
    assert list(found._sections) == ["m"]
