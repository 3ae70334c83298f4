"""TLS: the listeners' certificates (re-read when their files change), the channel credentials
to TF Serving, and the caller's identity from its client certificate.

One ``Certificates`` holds what the listeners serve. ``reload()`` (every ``tls_reload_interval``
seconds, and on SIGHUP) re-reads the files only when one of them changed; a new set is checked
with Python's ``ssl`` (each file parses, the key fits the certificate) before it is used, and a
set that does not pass is refused with one log line while the old one stays. Neither listener
restarts, so no call is dropped: the gRPC listener's credentials ask ``Certificates`` for the
current set at each new handshake (``grpc.dynamic_ssl_server_credentials``), and the HTTP
listener's ``ssl.SSLContext`` hands each new handshake the context of the current set.
Connections already open keep the certificate they were made with.

A client CA makes mutual TLS required on both listeners. The client certificate's identity is
its first DNS or URI subject alternative name, else its subject's common name
(``peer_identity_grpc``, ``peer_identity_http``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from tfgate.config import Config, ConfigError

if TYPE_CHECKING:
    from aiohttp import web

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Files:
    cert: str
    key: str
    client_ca: str


@dataclass(frozen=True)
class Material:
    """One certificate set as read from its files, checked to fit together."""

    cert: bytes
    key: bytes
    client_ca: bytes | None
    # (inode, size, mtime in ns) of each file, to tell when one changed.
    stamp: tuple[tuple[int, int, int], ...]


def _stamp(paths: tuple[str, ...]) -> tuple[tuple[int, int, int], ...]:
    stats = [os.stat(p) for p in paths]
    return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)


def _read(files: _Files) -> Material:
    """The files' contents, checked with ``ssl``; raises ConfigError naming the setting."""
    paths = (files.cert, files.key) + ((files.client_ca,) if files.client_ca else ())
    stamp = _stamp(paths)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(files.cert, files.key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"tls_cert, tls_key: {files.cert} and {files.key} are not a PEM certificate and "
            f"its private key ({_reason(exc)})"
        ) from None
    ca = None
    if files.client_ca:
        try:
            context.load_verify_locations(cafile=files.client_ca)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"tls_client_ca: {files.client_ca} is not a PEM CA bundle ({_reason(exc)})"
            ) from None
        ca = Path(files.client_ca).read_bytes()
    return Material(Path(files.cert).read_bytes(), Path(files.key).read_bytes(), ca, stamp)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


class Certificates:
    """The listeners' current certificate set; see the module docstring."""

    def __init__(self, config: Config) -> None:
        self._files = _Files(config.tls_cert, config.tls_key, config.tls_client_ca)
        self.interval = config.tls_reload_interval
        self.mutual = bool(config.tls_client_ca)
        self.current = _read(self._files)
        self.generation = 0
        # The HTTP listener's context for new handshakes; built again on each reload.
        self._http: ssl.SSLContext | None = None
        self._refused: tuple[tuple[int, int, int], ...] | None = None
        self._watch: asyncio.Task[None] | None = None

    def reload(self) -> bool:
        """Re-reads the files if one changed; True if a new set is now served."""
        try:
            stamp = _stamp(self._paths())
        except OSError as exc:
            return self._refuse(f"{exc.filename}: {exc.strerror}", None)
        if stamp == self.current.stamp:
            return False
        try:
            material = _read(self._files)
        except (ConfigError, OSError) as exc:
            return self._refuse(str(exc), stamp)
        if self._http is not None:
            try:
                self._http = self._new_http_context()
            except (ssl.SSLError, OSError) as exc:  # changed again between the two reads
                return self._refuse(_reason(exc), stamp)
        self.current = material
        self.generation += 1
        logger.info("TLS: new certificate loaded from %s", self._files.cert)
        return True

    def _refuse(self, reason: str, stamp: tuple[tuple[int, int, int], ...] | None) -> bool:
        # Logged once per change of the files, not at every poll.
        if stamp is None or stamp != self._refused:
            logger.warning("TLS: new certificate refused, the previous one stays: %s", reason)
        self._refused = stamp
        return False

    def _paths(self) -> tuple[str, ...]:
        files = self._files
        return (files.cert, files.key) + ((files.client_ca,) if files.client_ca else ())

    def _grpc_configuration(self) -> grpc.ServerCertificateConfiguration:
        material = self.current
        return grpc.ssl_server_certificate_configuration(
            [(material.key, material.cert)], root_certificates=material.client_ca
        )

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials for the gRPC listener that follow ``reload``."""
        served = {"generation": self.generation}

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            # Called by grpc at each new handshake: None keeps the set it has.
            if served["generation"] == self.generation:
                return None
            served["generation"] = self.generation
            return self._grpc_configuration()

        return grpc.dynamic_ssl_server_credentials(
            self._grpc_configuration(),
            fetch,  # type: ignore[arg-type]  # grpc documents None as "keep", its stubs do not
            require_client_authentication=self.mutual,
        )

    def http_context(self) -> ssl.SSLContext:
        """An SSLContext for the HTTP listener that follows ``reload``.

        The listener keeps this one object; at each handshake its server-name callback hands
        the connection the context of the current set, so that a new certificate and a new
        client CA bundle (CAs removed as well as added) apply to new connections.
        """
        self._http = self._new_http_context()
        listener = self._new_http_context()

        def current(connection: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
            if self._http is not None:
                connection.context = self._http

        listener.sni_callback = current
        return listener

    def _new_http_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self._files.cert, self._files.key)
        if self._files.client_ca:
            context.load_verify_locations(cafile=self._files.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def start_watching(self) -> None:
        """Polls the files every ``tls_reload_interval`` seconds (on the running loop)."""
        self._watch = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            # On the loop's thread, which also makes the HTTP handshakes with these contexts.
            self.reload()

    async def stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None


def channel_credentials(config: Config) -> grpc.ChannelCredentials:
    """TLS credentials to TF Serving: its CA bundle and, if set, tfgate's client certificate."""
    try:
        ca = Path(config.backend_tls_ca).read_bytes()
        key = Path(config.backend_tls_key).read_bytes() if config.backend_tls_key else None
        cert = Path(config.backend_tls_cert).read_bytes() if config.backend_tls_cert else None
    except OSError as exc:
        raise ConfigError(f"backend_tls: cannot read {exc.filename}: {exc.strerror}") from None
    check = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        check.load_verify_locations(cafile=config.backend_tls_ca)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"backend_tls_ca: {config.backend_tls_ca} is not a PEM CA bundle ({_reason(exc)})"
        ) from None
    if cert is not None:
        try:
            check.load_cert_chain(config.backend_tls_cert, config.backend_tls_key)
        except ssl.SSLError as exc:
            raise ConfigError(
                "backend_tls_cert, backend_tls_key: not a PEM certificate and its private key "
                f"({_reason(exc)})"
            ) from None
    return grpc.ssl_channel_credentials(ca, key, cert)


def channel_options(config: Config) -> list[tuple[str, Any]]:
    """The server name tfgate expects in TF Serving's certificate, where it is not the host."""
    if not config.backend_tls_server_name:
        return []
    return [("grpc.ssl_target_name_override", config.backend_tls_server_name)]


def _identity(sans: list[tuple[str, str]], common_name: str | None) -> str | None:
    for kind, value in sans:
        if kind in ("DNS", "URI") and value:
            return value
    return common_name or None


def peer_identity_grpc(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The verified client certificate's identity on a gRPC call, or None without one."""
    auth = context.auth_context()
    if not auth.get("x509_pem_cert"):
        return None
    dns = {v.decode() for v in auth.get("peer_dns", [])}
    uris = {v.decode() for v in auth.get("peer_uri", [])}
    # x509_subject_alternative_name keeps the certificate's order over every kind of SAN.
    sans = []
    for raw in auth.get("x509_subject_alternative_name", []):
        value = raw.decode()
        if value in uris:
            sans.append(("URI", value))
        elif value in dns:
            sans.append(("DNS", value))
    names = list(auth.get("x509_common_name", []))
    return _identity(sans, names[0].decode() if names else None)


def peer_identity_http(request: web.Request) -> str | None:
    """The verified client certificate's identity on an HTTP request, or None without one."""
    transport = request.transport
    if transport is None:
        return None
    cert = transport.get_extra_info("peercert")
    if not cert:
        return None
    sans = [(str(kind), str(value)) for kind, value in cert.get("subjectAltName", ())]
    common_name = None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and common_name is None:
                common_name = str(value)
    return _identity(sans, common_name)
