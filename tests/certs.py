"""Test certificates made with the ``openssl`` command: a CA and leaves it signs, in a folder."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.tools import debian_tool


def _run(*args: str) -> None:
    done = subprocess.run(
        [debian_tool("openssl"), *args], check=False, capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


@dataclass(frozen=True)
class Leaf:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    """A CA in ``folder``: ``cert``/``key`` are its own, ``issue`` signs a leaf."""

    folder: Path
    name: str

    @property
    def cert(self) -> Path:
        return self.folder / f"{self.name}.pem"

    @property
    def key(self) -> Path:
        return self.folder / f"{self.name}.key"

    def issue(self, name: str, common_name: str, sans: tuple[str, ...] = ()) -> Leaf:
        """A certificate for both server and client use; ``sans`` as openssl writes them
        (``DNS:localhost``, ``URI:spiffe://x``, ``IP:127.0.0.1``)."""
        leaf = Leaf(self.folder / f"{name}.pem", self.folder / f"{name}.key")
        csr = self.folder / f"{name}.csr"
        ext = self.folder / f"{name}.ext"
        lines = ["basicConstraints=CA:FALSE", "extendedKeyUsage=serverAuth,clientAuth"]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        _run(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(leaf.key), "-out", str(csr), "-subj", f"/CN={common_name}",
        )  # fmt: skip
        _run(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-set_serial", str(abs(hash((self.name, name))) % 10**12 + 1), "-days", "2",
            "-extfile", str(ext), "-out", str(leaf.cert),
        )  # fmt: skip
        return leaf


def authority(folder: Path, name: str) -> Authority:
    """A new self-signed CA named ``name`` in ``folder``."""
    ca = Authority(folder, name)
    _run(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(ca.key), "-out", str(ca.cert), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return ca


SERVER_SANS = ("DNS:localhost", "IP:127.0.0.1")
