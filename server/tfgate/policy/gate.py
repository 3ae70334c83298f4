"""The gate every call passes before the core does anything with it: who is calling
(authentication) and whether they may (authorization).

A caller presents ``authorization: Bearer <token>`` (gRPC metadata or HTTP header) or
``x-api-key: <key>``; with ``[auth] tls_identity`` on, a caller presenting neither is the client
its verified TLS certificate names. A bearer token is an API key (tfgate.policy.keys) or, with a
``TokenVerifier`` (JWT), a token it vouches for. The Authorization header wins when both are sent.
With auth off the gate lets every call through and leaves its client "-". A call is
authenticated once (its ``client`` is set then); a front may check it early (``authorize``),
before reading a body, and the core admits it again: that second time only checks its rights.

Then, when rate limits are set (tfgate.policy.limits), the core's admission takes the call's
tokens: once per call, after authorization, before any preprocessing or backend call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from tfgate.calls import Call
from tfgate.errors import Unauthenticated
from tfgate.policy.clients import Rights
from tfgate.policy.config import PolicyConfig
from tfgate.policy.keys import KeyTable, load_keys
from tfgate.policy.limits import RateLimits
from tfgate.policy.limits_config import LimitsConfig

if TYPE_CHECKING:
    from tfgate.policy.limits_redis import SharedLimits


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
        limits: RateLimits | None = None,
        shared: SharedLimits | None = None,
    ) -> None:
        self.enabled = policy.enabled
        self.limits = limits
        self.shared = shared  # the same buckets in Redis, when [limits] redis is set
        # Whether admission does anything: an open gate costs one attribute test per call.
        self.active = policy.enabled or limits is not None
        self._tls_identity = policy.tls_identity
        self._keys = keys or KeyTable({})
        self._verifier = verifier
        self._rights = Rights(policy.clients)
        self._open = frozenset(policy.open)

    @classmethod
    def from_config(
        cls,
        policy: PolicyConfig,
        verifier: TokenVerifier | None = None,
        limits: LimitsConfig | None = None,
    ) -> Gate:
        """The gate ``policy`` (and ``limits``) describe, with its keys file and JWKS file read
        (ConfigError or PolicyError if one is bad)."""
        keys = load_keys(policy.keys_file) if policy.enabled and policy.keys_file else None
        if verifier is None and policy.enabled and policy.jwt is not None:
            # Imported here: PyJWT and cryptography are loaded only when JWTs are configured.
            from tfgate.policy.jwt import JwtVerifier

            verifier = JwtVerifier(policy.jwt)
        buckets = shared = None
        if limits is not None and limits.rate_limited:
            buckets = RateLimits(limits, policy.clients)
            if limits.redis:
                from tfgate.policy.limits_redis import SharedLimits  # redis: only when set

                shared = SharedLimits(limits.redis, limits.redis_timeout, buckets)
        return cls(policy, keys, verifier, buckets, shared)

    async def start(self) -> None:
        if self._verifier is not None:
            await self._verifier.start()

    async def close(self) -> None:
        if self._verifier is not None:
            await self._verifier.close()
        if self.shared is not None:
            await self.shared.close()

    async def admit(self, call: Call, method: str, model: str) -> None:
        """Sets ``call.client``, or raises Unauthenticated; then PermissionDenied unless the
        client may call ``method`` on ``model``; then RateLimited unless the rate limits let it
        through. The core admits each call once."""
        if self.active:  # else not even a second coroutine
            await self.admit_all(call, method, (model,))

    async def admit_all(self, call: Call, method: str, models: Sequence[str]) -> None:
        """``admit`` for a call naming several models (MultiInference): each must be allowed;
        the rate limits count it once, as a call of the last model named (the one TF Serving
        reads when a request names several)."""
        if self.enabled:
            await self.authorize_all(call, method, models)
        if self.shared is not None:
            await self.shared.check(call.client, models[-1])
        elif self.limits is not None:
            self.limits.check(call.client, models[-1])

    def closed(self, service: str) -> bool:
        """Whether ``service`` (of tfgate.policy.config.OPEN_SERVICES) needs credentials."""
        return self.enabled and service not in self._open

    async def authenticate(self, call: Call) -> None:
        """Sets ``call.client`` or raises Unauthenticated (auth on): for a service with no
        model, such as the health service once ``[auth] open`` leaves it out."""
        if self.enabled and call.client == "-":
            call.client = await self._client(call)

    async def authorize(self, call: Call, method: str, model: str) -> None:
        """``admit`` without the rate limits: for a front that checks a call before it reads
        its body (the core admits it afterwards)."""
        if self.enabled:
            await self.authorize_all(call, method, (model,))

    async def authorize_all(self, call: Call, method: str, models: Sequence[str]) -> None:
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
