"""JWT bearer tokens: checked with PyJWT against keys from a JWKS file and/or URL, then cached.

Each key verifies exactly one algorithm, fixed by its type when it is loaded (RSA: RS256,
EC P-256: ES256, oct: HS256); a token is checked only against keys pinned to the algorithm its
header names. So an HS256 token is never checked with an RSA public key as the HMAC secret (key
confusion), and ``none`` is no algorithm here. HMAC secrets come from the JWKS file only: a key
set fetched over the network holds public keys, and its ``oct`` entries are ignored.

The URL's key set is fetched by a ``JwksFetch`` (tfgate.policy.jwks_fetch: aiohttp, with a
timeout; off the call path once keys are known), kept for ``jwks_refresh`` seconds, and fetched
again early when a token names a key id tfgate does not know, at most once per
``REFETCH_INTERVAL``. A failed fetch keeps the keys from
before and is logged once per run of failures.

A verified token is remembered, with its client, until its ``exp`` (plus the leeway), so a
client that sends the same token on every call pays the signature check once; the cache holds at
most ``CACHE_SIZE`` tokens and drops the least recently used. The cache is emptied whenever the
key set changes, so a key taken out of the JWKS stops accepting its tokens at the next fetch.

Every failure is ``Unauthenticated("invalid")`` or ``Unauthenticated("expired")``, nothing more:
the caller learns nothing about the keys, and no token or secret reaches a log line or a message.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlsplit, urlunsplit

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tfgate.config import ConfigError
from tfgate.errors import Unauthenticated
from tfgate.policy.config import KEY_TYPES, PREFIX, JwtSettings

logger = logging.getLogger(__name__)


CACHE_SIZE: Final = 10_000
# An unknown key id fetches the URL's key set again at most this often (seconds), so that a
# flood of tokens with made-up key ids costs one fetch per interval, not one per call.
REFETCH_INTERVAL: Final = 5.0
MAX_KEYS: Final = 100
# Longer tokens are refused before parsing; a header carries them, and they stay in the cache.
MAX_TOKEN: Final = 8192
# A client name ends up in logs and metrics labels: short and printable.
MAX_CLIENT: Final = 256
MIN_HMAC_BYTES: Final = 32  # RFC 7518 section 3.2: at least the hash's size
MIN_RSA_BITS: Final = 2048


@dataclass(frozen=True)
class _Key:
    kid: str | None
    algorithm: str  # the one algorithm this key verifies
    # The public key's DER, or the secret: what tells a changed key set from the same one.
    material: bytes
    key: Any = field(compare=False)  # a cryptography public key, or the HMAC secret's bytes


class _KeyRefused(ValueError):
    """A JWKS entry tfgate will not use; the message names the entry, never its material."""


def _key_of(entry: object, where: str, algorithms: tuple[str, ...], *, secrets: bool) -> _Key:
    if not isinstance(entry, dict):
        raise _KeyRefused(f"{where}: not a JSON object")
    kid = entry.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _KeyRefused(f"{where}: kid is not a string")
    if kid is not None:
        where = f"{where} (kid {kid!r})"
    kty = entry.get("kty")
    algorithm = next((a for a, t in KEY_TYPES.items() if t == kty), None)
    if algorithm is None:
        raise _KeyRefused(f"{where}: key type {kty!r} is not one of RSA, EC, oct")
    if kty == "EC" and entry.get("crv") != "P-256":
        raise _KeyRefused(f"{where}: EC keys must be on P-256 (ES256)")
    if entry.get("alg", algorithm) != algorithm:
        raise _KeyRefused(f"{where}: alg {entry.get('alg')!r} is not {algorithm} for a {kty} key")
    if entry.get("use", "sig") != "sig":
        raise _KeyRefused(f"{where}: use {entry.get('use')!r} is not 'sig'")
    if algorithm not in algorithms:
        raise _KeyRefused(f"{where}: {algorithm} is not in {PREFIX}algorithms")
    if kty == "oct" and not secrets:
        raise _KeyRefused(f"{where}: HMAC secrets are taken from {PREFIX}jwks_file only")
    try:
        key = jwt.PyJWK(entry, algorithm).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        # PyJWT's messages quote the whole JWK, secret and all: say what, not the key.
        raise _KeyRefused(f"{where}: not a valid {kty} key") from None
    if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        key = key.public_key()  # a verifier needs only the public half
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise _KeyRefused(f"{where}: RSA key of {key.key_size} bits, under {MIN_RSA_BITS}")
    if isinstance(key, bytes) and len(key) < MIN_HMAC_BYTES:
        raise _KeyRefused(f"{where}: HMAC secret of {len(key)} bytes, under {MIN_HMAC_BYTES}")
    if isinstance(key, bytes):
        return _Key(kid, algorithm, key, key)
    material = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return _Key(kid, algorithm, material, key)


def parse_jwks(
    data: object, algorithms: tuple[str, ...], *, secrets: bool, strict: bool
) -> tuple[list[_Key], list[str]]:
    """The usable keys of a JWKS document, and why each other entry was left out.

    ``strict`` (the operator's own file) raises _KeyRefused at the first unusable entry instead.
    """
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise _KeyRefused('expected a JSON object with a "keys" list')
    entries: list[object] = data["keys"]
    if len(entries) > MAX_KEYS:
        raise _KeyRefused(f"{len(entries)} keys, more than tfgate's {MAX_KEYS}")
    keys: list[_Key] = []
    refused: list[str] = []
    kids: set[str] = set()
    for number, entry in enumerate(entries):
        try:
            key = _key_of(entry, f"key {number}", algorithms, secrets=secrets)
            if key.kid is not None and key.kid in kids:
                raise _KeyRefused(f"key {number}: kid {key.kid!r} appears twice")
        except _KeyRefused as exc:
            if strict:
                raise
            refused.append(str(exc))
            continue
        if key.kid is not None:
            kids.add(key.kid)
        keys.append(key)
    return keys, refused


def load_jwks_file(path: str, algorithms: tuple[str, ...]) -> list[_Key]:
    """The keys of the operator's JWKS file; ConfigError naming the entry for any bad one."""
    setting = f"{PREFIX}jwks_file"
    try:
        data = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{setting}: {path} is not JSON: {exc}") from None
    try:
        keys, _ = parse_jwks(data, algorithms, secrets=True, strict=True)
    except _KeyRefused as exc:
        raise ConfigError(f"{setting}: {path}: {exc}") from None
    if not keys:
        raise ConfigError(f"{setting}: {path} holds no keys")
    return keys


class _Index:
    """Keys by kid, and by algorithm for tokens that name no kid."""

    def __init__(self, keys: Iterable[_Key]) -> None:
        self.by_kid: dict[str, _Key] = {}
        self.by_algorithm: dict[str, list[_Key]] = {}
        for key in keys:
            if key.kid is not None:
                if key.kid in self.by_kid:
                    continue  # the file's key wins over the URL's one with the same kid
                self.by_kid[key.kid] = key
            self.by_algorithm.setdefault(key.algorithm, []).append(key)

    def candidates(self, algorithm: str, kid: str | None) -> list[_Key]:
        if kid is None:
            return self.by_algorithm.get(algorithm, [])
        key = self.by_kid.get(kid)
        # A known kid of another algorithm is refused here: this is the key-confusion guard.
        return [key] if key is not None and key.algorithm == algorithm else []


def _safe_url(url: str) -> str:
    """The URL for a log line: no user, password or query (they may carry credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class JwksFetch(Protocol):
    """Gets a JWKS document; tfgate.policy.jwks_fetch.HttpFetch does it with aiohttp."""

    async def fetch(self, url: str) -> bytes:
        """The body; ConnectionError, TimeoutError or ValueError when there is none to use."""

    async def close(self) -> None: ...


class JwtVerifier:
    """Turns a bearer token into the client it names, or raises ``Unauthenticated``."""

    def __init__(
        self,
        settings: JwtSettings,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        cache_size: int = CACHE_SIZE,
        refetch_interval: float = REFETCH_INTERVAL,
        fetch: JwksFetch | None = None,
    ) -> None:
        self.settings = settings
        self._wall = wall
        self._monotonic = monotonic
        self._cache_size = cache_size
        self._refetch_interval = refetch_interval
        self._file_keys = (
            load_jwks_file(settings.jwks_file, settings.algorithms) if settings.jwks_file else []
        )
        self._url_keys: list[_Key] = []
        self._index = _Index(self._file_keys)
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()
        if fetch is None and settings.jwks_url:
            # Imported here: aiohttp is loaded only when a URL is configured.
            from tfgate.policy.jwks_fetch import HttpFetch

            fetch = HttpFetch()
        self._fetcher = fetch
        self._fetch: asyncio.Task[None] | None = None
        self._fetched = False  # the URL's key set has been read at least once
        self._next_refresh = -math.inf
        self._last_attempt = -math.inf
        self._failing = False

    @property
    def key_count(self) -> int:
        return len(self._file_keys) + len(self._url_keys)

    async def start(self) -> None:
        """Fetches the URL's key set once, so that the first calls need not wait for it."""
        if self.settings.jwks_url:
            await self._refetch()

    async def close(self) -> None:
        if self._fetch is not None:
            self._fetch.cancel()
            await asyncio.gather(self._fetch, return_exceptions=True)
        if self._fetcher is not None:
            await self._fetcher.close()

    async def client_of(self, token: str) -> str:
        """The client named by ``token``'s client claim, once its signature and claims hold."""
        if self.settings.jwks_url and self._monotonic() >= self._next_refresh:
            if self._fetched:
                self._start_fetch()  # the keys from before serve until it is done
            else:
                await self._refetch()
        hit = self._cache.get(token)
        if hit is not None:
            client, until = hit
            if self._wall() < until:
                self._cache.move_to_end(token)
                return client
            del self._cache[token]
            raise Unauthenticated("expired")
        return await self._verify(token)

    async def _verify(self, token: str) -> str:
        if len(token) > MAX_TOKEN:
            raise Unauthenticated("invalid")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("invalid") from None
        algorithm = header.get("alg")
        kid = header.get("kid")
        if algorithm not in self.settings.algorithms or not isinstance(kid, (str, type(None))):
            raise Unauthenticated("invalid")  # "none" among them: it is never in algorithms
        keys = self._index.candidates(algorithm, kid)
        if (
            not keys
            and kid is not None
            and kid not in self._index.by_kid
            and self.settings.jwks_url
            and self._monotonic() - self._last_attempt >= self._refetch_interval
        ):
            await self._refetch()
            keys = self._index.candidates(algorithm, kid)
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=[key.algorithm],
                    audience=self.settings.audience or None,
                    issuer=self.settings.issuer or None,
                    leeway=self.settings.leeway,
                    options={"require": ["exp"], "enforce_minimum_key_length": True},
                )
            except jwt.ExpiredSignatureError:
                # PyJWT checks claims only once the signature holds: this token was genuine.
                raise Unauthenticated("expired") from None
            except jwt.PyJWTError:
                continue
            return self._remember(token, claims)
        raise Unauthenticated("invalid")

    def _remember(self, token: str, claims: Mapping[str, Any]) -> str:
        client = claims.get(self.settings.client_claim)
        if (
            not isinstance(client, str)
            or not client
            or len(client) > MAX_CLIENT
            or not client.isprintable()
        ):
            raise Unauthenticated("invalid")
        # PyJWT accepted "exp" as a number (it is required); the token serves as long as PyJWT
        # would accept it.
        self._cache[token] = (client, float(claims["exp"]) + self.settings.leeway)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return client

    def _start_fetch(self) -> asyncio.Task[None]:
        if self._fetch is None:
            self._fetch = asyncio.get_running_loop().create_task(self._fetch_keys())
        return self._fetch

    async def _refetch(self) -> None:
        # Shielded: a caller that goes away does not cancel the fetch the others wait for.
        await asyncio.shield(self._start_fetch())

    async def _fetch_keys(self) -> None:
        url = self.settings.jwks_url
        self._last_attempt = self._monotonic()
        try:
            assert self._fetcher is not None  # made in __init__ whenever there is a URL
            data = orjson.loads(await self._fetcher.fetch(url))
            keys, refused = parse_jwks(data, self.settings.algorithms, secrets=False, strict=False)
        except (OSError, TimeoutError, ValueError) as exc:
            # _KeyRefused and JSON errors are ValueErrors; none of them quotes key material.
            self._next_refresh = self._monotonic() + self._refetch_interval
            if not self._failing:
                self._failing = True
                logger.warning(
                    "JWKS %s: cannot fetch it (%s); keeping the %d keys from before",
                    _safe_url(url),
                    str(exc) or type(exc).__name__,
                    len(self._url_keys),
                )
            return
        finally:
            self._fetch = None
        self._next_refresh = self._monotonic() + self.settings.jwks_refresh
        self._fetched = True
        if self._failing:
            self._failing = False
            logger.info("JWKS %s: fetched again", _safe_url(url))
        if keys != self._url_keys:
            logger.info(
                "JWKS %s: %d keys%s",
                _safe_url(url),
                len(keys),
                f"; left out: {'; '.join(refused)}" if refused else "",
            )
            self._url_keys = keys
            self._index = _Index([*self._file_keys, *keys])
            self._cache.clear()
