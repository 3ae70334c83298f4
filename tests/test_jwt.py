"""tfgate.policy.jwt: which tokens name a client, which are refused and why, the JWKS URL and
the cache of verified tokens. Keys are made here; the JWKS URL is a local aiohttp server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, RSAAlgorithm

from tests.jwks_server import JwksServer
from tests.log_secrets import remember
from tfgate.config import ConfigError
from tfgate.errors import Code, Unauthenticated
from tfgate.policy.config import JwtSettings, PolicyError
from tfgate.policy.jwks_fetch import HttpFetch
from tfgate.policy.jwt import JwtVerifier

ISSUER = "https://issuer.example"
AUDIENCE = "tfgate"


@dataclass(frozen=True)
class Keys:
    rsa_key: rsa.RSAPrivateKey
    rsa_other: rsa.RSAPrivateKey
    ec_key: ec.EllipticCurvePrivateKey
    secret: bytes

    def jwk(self, name: str, kid: str) -> dict[str, Any]:
        if name == "rsa":
            out = RSAAlgorithm.to_jwk(self.rsa_key.public_key(), as_dict=True)
        elif name == "rsa_other":
            out = RSAAlgorithm.to_jwk(self.rsa_other.public_key(), as_dict=True)
        elif name == "ec":
            out = ECAlgorithm.to_jwk(self.ec_key.public_key(), as_dict=True)
        else:
            out = HMACAlgorithm.to_jwk(self.secret, as_dict=True)
        return {**out, "kid": kid}


def make_keys() -> Keys:
    secret = os.urandom(32)
    remember(b64(secret))  # the HMAC secret as its JWK ("k") writes it
    remember(secret.hex())
    return Keys(
        rsa_key=rsa.generate_private_key(65537, 2048),
        rsa_other=rsa.generate_private_key(65537, 2048),
        ec_key=ec.generate_private_key(ec.SECP256R1()),
        secret=secret,
    )


@pytest.fixture(scope="module")
def keys() -> Keys:
    return make_keys()


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    out = {"sub": "team-a", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600}
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


def sign(payload: dict[str, Any], key: Any, algorithm: str, kid: str | None) -> str:
    headers = {"kid": kid} if kid is not None else None
    return remember(jwt.encode(payload, key, algorithm=algorithm, headers=headers))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any], kid: str | None) -> str:
    header: dict[str, Any] = {"alg": "none", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    return remember(f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.")


def hs256_by_hand(payload: dict[str, Any], secret: bytes, kid: str | None) -> str:
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return remember(f"{signing_input}.{b64(mac)}")


@pytest.fixture
def jwks_file(tmp_path: Path, keys: Keys) -> str:
    path = tmp_path / "jwks.json"
    entries = [keys.jwk("rsa", "r1"), keys.jwk("ec", "e1"), keys.jwk("oct", "h1")]
    path.write_text(json.dumps({"keys": entries}))
    return str(path)


def verifier(jwks_file: str, **settings: Any) -> JwtVerifier:
    return JwtVerifier(
        JwtSettings(jwks_file=jwks_file, issuer=ISSUER, audience=AUDIENCE, **settings)
    )


async def refused(check: JwtVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await check.client_of(token)
    assert caught.value.code is Code.UNAUTHENTICATED
    return caught.value.message


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "auth.jwt.jwks_file, auth.jwt.jwks_url: need one or both"),
        ({"jwks_file": "x", "algorithms": ("RS256", "none")}, "'none' is refused"),
        ({"jwks_file": "x", "algorithms": ("RS384",)}, "unknown algorithm 'RS384'"),
        ({"jwks_file": "x", "algorithms": ()}, "auth.jwt.algorithms: must name"),
        ({"jwks_url": "ftp://keys"}, "auth.jwt.jwks_url: expected an http"),
        ({"jwks_file": "x", "leeway": -1.0}, "auth.jwt.leeway"),
        ({"jwks_file": "x", "jwks_refresh": 0.0}, "auth.jwt.jwks_refresh"),
        ({"jwks_file": "x", "client_claim": ""}, "auth.jwt.client_claim"),
    ],
)
def test_bad_settings_name_the_setting(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        JwtSettings(**settings)


def test_algorithms_from_a_toml_list_become_a_tuple() -> None:
    settings = JwtSettings(jwks_file="x", algorithms=["ES256"])  # type: ignore[arg-type]
    assert settings.algorithms == ("ES256",)


def test_bad_jwks_files_are_refused_without_quoting_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    short = HMACAlgorithm.to_jwk(b"tiny-secret-0123", as_dict=True)
    cases = [
        ("not json", "is not JSON"),
        (json.dumps({"keys": []}), "holds no keys"),
        (json.dumps({"nokeys": 1}), 'a "keys" list'),
        (json.dumps({"keys": [{**short, "kid": "s"}]}), "HMAC secret of 16 bytes, under 32"),
        (json.dumps({"keys": [{"kty": "oct", "k": "%%%", "kid": "b"}]}), "not a valid oct key"),
        (json.dumps({"keys": [{"kty": "OKP", "kid": "o"}]}), "key type 'OKP'"),
    ]
    for text, message in cases:
        path.write_text(text)
        with pytest.raises(ConfigError, match=message) as caught:
            JwtVerifier(JwtSettings(jwks_file=str(path)))
        assert "auth.jwt.jwks_file" in str(caught.value)
        assert short["k"] not in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read"):
        JwtVerifier(JwtSettings(jwks_file=str(tmp_path / "missing.json")))


def test_a_file_key_outside_the_algorithms_is_refused(jwks_file: str) -> None:
    with pytest.raises(ConfigError, match=r"key 2 \(kid 'h1'\): HS256 is not in"):
        JwtVerifier(JwtSettings(jwks_file=jwks_file, algorithms=("RS256", "ES256")))


# --- verification -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_good_tokens_name_their_client(keys: Keys, jwks_file: str) -> None:
    check = verifier(jwks_file)
    assert await check.client_of(sign(claims(sub="rs"), keys.rsa_key, "RS256", "r1")) == "rs"
    assert await check.client_of(sign(claims(sub="es"), keys.ec_key, "ES256", "e1")) == "es"
    assert await check.client_of(sign(claims(sub="hs"), keys.secret, "HS256", "h1")) == "hs"
    # No kid: the keys of the token's algorithm are tried.
    assert await check.client_of(sign(claims(sub="nokid"), keys.ec_key, "ES256", None)) == "nokid"


@pytest.mark.asyncio
async def test_the_client_comes_from_the_configured_claim(keys: Keys, jwks_file: str) -> None:
    check = verifier(jwks_file, client_claim="client_id")
    token = sign(claims(client_id="svc-7"), keys.rsa_key, "RS256", "r1")
    assert await check.client_of(token) == "svc-7"
    assert await refused(check, sign(claims(), keys.rsa_key, "RS256", "r1")) == "invalid"


@pytest.mark.asyncio
async def test_refused_tokens_say_invalid(keys: Keys, jwks_file: str) -> None:
    check = verifier(jwks_file)
    now = int(time.time())
    pem = keys.rsa_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    bad = {
        "empty": "",
        "missing parts": "eyJhbGciOiJIUzI1NiJ9.e30",
        "malformed": "not.a.token",
        "too long": "a" * 10_000,
        "unknown kid": sign(claims(), keys.rsa_key, "RS256", "nobody"),
        "another key": sign(claims(), keys.rsa_other, "RS256", "r1"),
        "not yet valid": sign(claims(nbf=now + 3600), keys.rsa_key, "RS256", "r1"),
        "wrong issuer": sign(claims(iss="https://elsewhere"), keys.rsa_key, "RS256", "r1"),
        "no issuer": sign(claims(iss=None), keys.rsa_key, "RS256", "r1"),
        "wrong audience": sign(claims(aud="other"), keys.rsa_key, "RS256", "r1"),
        "no audience": sign(claims(aud=None), keys.rsa_key, "RS256", "r1"),
        "no exp": sign(claims(exp=None), keys.rsa_key, "RS256", "r1"),
        "alg none": unsigned(claims(), "r1"),
        "alg none, no kid": unsigned(claims(), None),
        # Key confusion: HS256 with the RSA public key's PEM as the HMAC secret.
        "rsa pem as secret, rsa kid": hs256_by_hand(claims(), pem, "r1"),
        "rsa pem as secret, no kid": hs256_by_hand(claims(), pem, None),
        "kid of another algorithm": sign(claims(), keys.rsa_key, "RS256", "e1"),
        "no client claim": sign(claims(sub=None), keys.rsa_key, "RS256", "r1"),
        "empty client": sign(claims(sub=""), keys.rsa_key, "RS256", "r1"),
        "client not a string": sign(claims(sub=42), keys.ec_key, "ES256", "e1"),
        "client with a newline": sign(claims(sub="a\nb"), keys.ec_key, "ES256", "e1"),
        "algorithm not allowed": sign(claims(), keys.rsa_key, "RS512", "r1"),
    }
    reasons = {name: await refused(check, token) for name, token in bad.items()}
    assert reasons == dict.fromkeys(bad, "invalid")
    # The same HS256 construction with the real secret passes: the refusals above are the key's.
    assert await check.client_of(hs256_by_hand(claims(), keys.secret, "h1")) == "team-a"


@pytest.mark.asyncio
async def test_expiry_with_the_leeway(keys: Keys, jwks_file: str) -> None:
    check = verifier(jwks_file, leeway=30.0)
    now = int(time.time())
    assert (
        await check.client_of(sign(claims(exp=now - 10), keys.rsa_key, "RS256", "r1")) == "team-a"
    )
    late = sign(claims(exp=now - 100), keys.rsa_key, "RS256", "r1")
    assert await refused(check, late) == "expired"
    # Expired and signed by someone else: "invalid", the signature is checked first.
    forged = sign(claims(exp=now - 100), keys.rsa_other, "RS256", "r1")
    assert await refused(check, forged) == "invalid"


@pytest.mark.asyncio
async def test_an_hs256_only_verifier_refuses_rsa_tokens(keys: Keys, tmp_path: Path) -> None:
    path = tmp_path / "hs.json"
    path.write_text(json.dumps({"keys": [keys.jwk("oct", "h1")]}))
    check = JwtVerifier(JwtSettings(jwks_file=str(path), algorithms=("HS256",)))
    assert await check.client_of(sign(claims(aud=None), keys.secret, "HS256", None)) == "team-a"
    assert await refused(check, sign(claims(aud=None), keys.rsa_key, "RS256", None)) == "invalid"


# --- the cache --------------------------------------------------------------------------------


def counting_decode(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = jwt.decode

    def decode(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", decode)
    return calls


@pytest.mark.asyncio
async def test_a_verified_token_is_not_verified_again_until_it_expires(
    keys: Keys, jwks_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = counting_decode(monkeypatch)
    wall = [time.time()]
    check = JwtVerifier(
        JwtSettings(jwks_file=jwks_file, issuer=ISSUER, audience=AUDIENCE, leeway=5.0),
        wall=lambda: wall[0],
    )
    exp = int(time.time()) + 60
    token = sign(claims(exp=exp), keys.rsa_key, "RS256", "r1")
    for _ in range(3):
        assert await check.client_of(token) == "team-a"
    assert calls == [token]
    wall[0] = exp + 4.0  # within the leeway
    assert await check.client_of(token) == "team-a"
    wall[0] = exp + 5.0
    assert await refused(check, token) == "expired"
    assert calls == [token]
    # A refused token is not remembered: each try is checked again.
    bad = sign(claims(), keys.rsa_other, "RS256", "r1")
    await refused(check, bad)
    await refused(check, bad)
    assert calls.count(bad) == 2


@pytest.mark.asyncio
async def test_the_cache_is_bounded(
    keys: Keys, jwks_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = counting_decode(monkeypatch)
    check = JwtVerifier(
        JwtSettings(jwks_file=jwks_file, issuer=ISSUER, audience=AUDIENCE), cache_size=2
    )
    tokens = [sign(claims(sub=f"c{i}"), keys.secret, "HS256", "h1") for i in range(3)]
    for token in [tokens[0], tokens[1], tokens[0], tokens[2]]:  # tokens[1] is the oldest use
        await check.client_of(token)
    assert len(calls) == 3
    await check.client_of(tokens[0])
    assert len(calls) == 3
    assert await check.client_of(tokens[1]) == "c1"
    assert len(calls) == 4


# --- keys from a URL --------------------------------------------------------------------------


@pytest_asyncio.fixture
async def server() -> AsyncIterator[JwksServer]:
    running = JwksServer()
    await running.start()
    yield running
    await running.stop()


@pytest_asyncio.fixture
async def url_verifier(server: JwksServer) -> AsyncIterator[tuple[JwtVerifier, list[float]]]:
    now = [1000.0]
    check = JwtVerifier(
        JwtSettings(jwks_url=server.url, audience=AUDIENCE, jwks_refresh=300.0),
        monotonic=lambda: now[0],
    )
    yield check, now
    await check.close()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 5 s")


@pytest.mark.asyncio
async def test_keys_are_fetched_once_and_kept(
    keys: Keys, server: JwksServer, url_verifier: tuple[JwtVerifier, list[float]]
) -> None:
    check, now = url_verifier
    server.keys = [keys.jwk("rsa", "r1"), keys.jwk("ec", "e1")]
    assert await check.client_of(sign(claims(sub="x"), keys.rsa_key, "RS256", "r1")) == "x"
    assert await check.client_of(sign(claims(sub="y"), keys.ec_key, "ES256", "e1")) == "y"
    assert server.requests == 1
    now[0] += 299
    await check.client_of(sign(claims(sub="z"), keys.rsa_key, "RS256", "r1"))
    assert server.requests == 1
    now[0] += 2  # past jwks_refresh: fetched again, in the background
    await check.client_of(sign(claims(sub="w"), keys.rsa_key, "RS256", "r1"))
    await until(lambda: server.requests == 2)


@pytest.mark.asyncio
async def test_an_unknown_kid_fetches_again_at_most_once_per_interval(
    keys: Keys, server: JwksServer, url_verifier: tuple[JwtVerifier, list[float]]
) -> None:
    check, now = url_verifier
    server.keys = [keys.jwk("rsa", "r1")]
    await check.start()
    assert server.requests == 1
    server.keys = [keys.jwk("rsa", "r1"), keys.jwk("ec", "e2")]  # a key added upstream
    now[0] += 6
    assert await check.client_of(sign(claims(sub="new"), keys.ec_key, "ES256", "e2")) == "new"
    assert server.requests == 2
    # Made-up kids within the interval: refused without another fetch.
    for n in range(20):
        assert await refused(check, sign(claims(), keys.rsa_key, "RS256", f"junk{n}")) == "invalid"
    assert server.requests == 2
    now[0] += 6
    await refused(check, sign(claims(), keys.rsa_key, "RS256", "junk-later"))
    assert server.requests == 3


@pytest.mark.asyncio
async def test_a_key_removed_upstream_stops_its_cached_tokens(
    keys: Keys, server: JwksServer, url_verifier: tuple[JwtVerifier, list[float]]
) -> None:
    check, now = url_verifier
    server.keys = [keys.jwk("rsa", "r1")]
    token = sign(claims(), keys.rsa_key, "RS256", "r1")
    assert await check.client_of(token) == "team-a"
    server.keys = [keys.jwk("ec", "e1")]
    now[0] += 301
    await check.client_of(sign(claims(), keys.ec_key, "ES256", "e1"))  # starts the refresh
    await until(lambda: check.key_count == 1 and server.requests == 2)
    await asyncio.sleep(0.05)
    assert await refused(check, token) == "invalid"


@pytest.mark.asyncio
async def test_hmac_secrets_from_the_url_are_ignored(
    keys: Keys, server: JwksServer, url_verifier: tuple[JwtVerifier, list[float]]
) -> None:
    check, _ = url_verifier
    server.keys = [keys.jwk("oct", "h1"), keys.jwk("rsa", "r1")]
    assert await refused(check, sign(claims(), keys.secret, "HS256", "h1")) == "invalid"
    assert await check.client_of(sign(claims(), keys.rsa_key, "RS256", "r1")) == "team-a"
    assert check.key_count == 1


@pytest.mark.asyncio
async def test_a_server_that_is_down_keeps_the_old_keys_and_logs_once(
    keys: Keys,
    server: JwksServer,
    url_verifier: tuple[JwtVerifier, list[float]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tfgate.policy.jwt")
    check, now = url_verifier
    server.keys = [keys.jwk("rsa", "r1")]
    await check.start()
    await server.stop()
    tokens = []
    for n in range(3):
        now[0] += 301
        tokens.append(sign(claims(sub=f"c{n}"), keys.rsa_key, "RS256", "r1"))
        assert await check.client_of(tokens[-1]) == f"c{n}"
        await until(lambda: check._fetch is None)
    failures = [r for r in caplog.records if "cannot fetch" in r.getMessage()]
    assert len(failures) == 1, caplog.text
    assert "keeping the 1 keys from before" in failures[0].getMessage()
    # An unknown kid while it is down: refused, the known keys still serve.
    now[0] += 6
    assert await refused(check, sign(claims(), keys.ec_key, "ES256", "e9")) == "invalid"
    assert await check.client_of(sign(claims(sub="still"), keys.rsa_key, "RS256", "r1")) == "still"
    # Back up: fetched again, and said so.
    await server.start(port=server.port)
    now[0] += 301
    await check.client_of(tokens[0])
    await until(lambda: any("fetched again" in r.getMessage() for r in caplog.records))
    for token in tokens:
        assert token not in caplog.text
        assert token.split(".")[2] not in caplog.text


@pytest.mark.asyncio
async def test_the_first_calls_wait_for_the_first_fetch(
    keys: Keys, server: JwksServer, url_verifier: tuple[JwtVerifier, list[float]]
) -> None:
    check, _ = url_verifier
    server.keys = [keys.jwk("rsa", "r1")]
    tokens = [sign(claims(sub=f"c{n}"), keys.rsa_key, "RS256", "r1") for n in range(20)]
    clients = await asyncio.gather(*(check.client_of(t) for t in tokens))
    assert clients == [f"c{n}" for n in range(20)]
    assert server.requests == 1


@pytest.mark.asyncio
async def test_an_error_answer_counts_as_a_failed_fetch(
    keys: Keys, server: JwksServer, url_verifier: tuple[JwtVerifier, list[float]]
) -> None:
    check, now = url_verifier
    server.status = 503
    assert await refused(check, sign(claims(), keys.rsa_key, "RS256", "r1")) == "invalid"
    assert server.requests == 1
    server.status = 200
    server.keys = [keys.jwk("rsa", "r1")]
    assert await refused(check, sign(claims(), keys.rsa_key, "RS256", "r1")) == "invalid"
    assert server.requests == 1  # within the interval after a failure: not fetched again
    now[0] += 6
    assert await check.client_of(sign(claims(), keys.rsa_key, "RS256", "r1")) == "team-a"
    assert server.requests == 2


@pytest.mark.asyncio
async def test_the_http_fetch_bounds_the_body_and_hides_aiohttp(
    keys: Keys, server: JwksServer
) -> None:
    server.keys = [keys.jwk("rsa", f"r{n}") for n in range(5)]
    fetcher = HttpFetch(limit=1000)
    try:
        with pytest.raises(ValueError, match="more than 1000 bytes"):
            await fetcher.fetch(server.url)
        await server.stop()
        with pytest.raises(ConnectionError):
            await fetcher.fetch(server.url)
    finally:
        await fetcher.close()
