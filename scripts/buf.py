"""Run buf (https://buf.build) over tfgate's own protos, installing it with npm when missing.

    scripts/buf.py lint        # buf lint, configured by buf.yaml

buf comes from the npm registry (the package carries the binary) into .tools/, pinned below so
that a new buf release cannot start failing `make lint` on its own.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
BUF_PACKAGE = "@bufbuild/buf"
BUF_VERSION = "1.75.0"
BUF = TOOLS / "node_modules" / ".bin" / "buf"


def installed_version() -> str | None:
    if not BUF.exists():
        return None
    result = subprocess.run([BUF, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def ensure_buf() -> Path:
    if installed_version() == BUF_VERSION:
        return BUF
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("buf is installed with npm, and npm is not on PATH (apt-get install npm)")
    TOOLS.mkdir(exist_ok=True)
    subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(TOOLS),
            "--no-audit",
            "--no-fund",
            "--save-exact",
            f"{BUF_PACKAGE}@{BUF_VERSION}",
        ],
        check=True,
    )
    if installed_version() != BUF_VERSION:
        raise SystemExit(f"npm did not install a working buf {BUF_VERSION} at {BUF}")
    return BUF


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["lint"])
    args = parser.parse_args(argv)
    buf = ensure_buf()
    return subprocess.run([buf, args.command], cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
