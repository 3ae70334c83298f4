"""The gate every call passes before the core does anything with it: who is calling
(authentication) and whether they may (authorization).

A caller presents ``authorization: Bearer <token>`` (gRPC metadata or HTTP header) or
``x-api-key: <key>``; with ``[auth] tls_identity`` on, a caller presenting neither is the client
its verified TLS certificate names. A bearer token is an API key (tfgate.policy.keys) or, with a
``TokenVerifier`` (JWT), a token it vouches for. The Authorization header wins when both are sent.
With auth off the gate lets every call through and leaves its client "-". A call is
authenticated once (its ``client`` is set then); a front may admit it early, before reading a
body, and the core admits it again: that second time only checks its rights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tfgate.calls import Call
from tfgate.errors import Unauthenticated
from tfgate.policy.clients import Rights
from tfgate.policy.config import PolicyConfig
from tfgate.policy.keys import KeyTable, load_keys


class TokenVerifier(Protocol):
    async def client_of(self, token: str) -> str:
        """The client a bearer token that is not an API key names; raises Unauthenticated."""
        ...

    async def start(self) -> None:
        """Gets what it needs before the first call (a JWKS URL's keys)."""
        ...

    async def close(self) -> None: ...


def _bearer(header: str) -> str:
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthenticated("invalid")
    return token


class Gate:
    def __init__(
        self,
        policy: PolicyConfig,
        keys: KeyTable | None = None,
        verifier: TokenVerifier | None = None,
    ) -> None:
        self.enabled = policy.enabled
        self._tls_identity = policy.tls_identity
        self._keys = keys or KeyTable({})
        self._verifier = verifier
        self._rights = Rights(policy.clients)

    @classmethod
    def from_config(cls, policy: PolicyConfig, verifier: TokenVerifier | None = None) -> Gate:
        """The gate ``policy`` describes, with its keys file and JWKS file read (ConfigError or
        PolicyError if one is bad)."""
        keys = load_keys(policy.keys_file) if policy.enabled and policy.keys_file else None
        if verifier is None and policy.enabled and policy.jwt is not None:
            # Imported here: PyJWT and cryptography are loaded only when JWTs are configured.
            from tfgate.policy.jwt import JwtVerifier

            verifier = JwtVerifier(policy.jwt)
        return cls(policy, keys, verifier)

    async def start(self) -> None:
        if self._verifier is not None:
            await self._verifier.start()

    async def close(self) -> None:
        if self._verifier is not None:
            await self._verifier.close()

    async def admit(self, call: Call, method: str, model: str) -> None:
        """Sets ``call.client``, or raises Unauthenticated; then PermissionDenied unless the
        client may call ``method`` on ``model``."""
        if self.enabled:  # else not even a second coroutine
            await self.admit_all(call, method, (model,))

    async def admit_all(self, call: Call, method: str, models: Sequence[str]) -> None:
        """``admit`` for a call naming several models (MultiInference): each must be allowed."""
        if not self.enabled:
            return
        if call.client == "-":  # authenticated once per call, however often it is admitted
            call.client = await self._client(call)
        self._rights.check(call.client, method, models)

    async def _client(self, call: Call) -> str:
        presented = call.credentials
        if presented.authorization:
            token = _bearer(presented.authorization)
            client = self._keys.client_of(token)
            if client is not None:
                return client
            if self._verifier is not None and token.count(".") == 2:
                return await self._verifier.client_of(token)
            raise Unauthenticated("invalid")
        if presented.api_key:
            client = self._keys.client_of(presented.api_key.strip())
            if client is None:
                raise Unauthenticated("invalid")
            return client
        if self._tls_identity and presented.tls_identity:
            return presented.tls_identity
        raise Unauthenticated("missing")
