"""The programs the bench runs besides Python: installed from Debian's packages when missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

# program -> Debian packages that provide it, in order of preference.
PROGRAMS = {
    "h2load": ("nghttp2-client",),
    "nginx": ("nginx-light", "nginx"),
    "node": ("nodejs",),
    "taskset": ("util-linux",),
}


def _apt(args: list[str]) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        ["apt-get", *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        print(f"  apt-get {' '.join(args)} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
    return done.returncode == 0


def ensure(programs: tuple[str, ...] = tuple(PROGRAMS)) -> None:
    """Installs each missing program with apt-get (``apt-get update`` first, once)."""
    missing = [p for p in programs if shutil.which(p) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise SystemExit(f"bench: needs {', '.join(missing)} (Debian: apt-get install as root)")
    print(f"installing {', '.join(missing)} from Debian's packages ...", flush=True)
    _apt(["update", "-qq"])
    for program in missing:
        for package in PROGRAMS[program]:
            if _apt(["install", "-y", "-qq", "--no-install-recommends", package]):
                break
        if shutil.which(program) is None:
            raise SystemExit(
                f"bench: could not install {program} ({' or '.join(PROGRAMS[program])})"
            )
