"""What access control costs: tfgate with authentication, authorization and rate limits on.

Two paths, each ``tfgate serve`` with a config file written into the run's directory:

- ``tfgate-auth``: ``[auth]`` with an API key file, one client allowed every model, and
  ``[limits]`` with a global bucket, a per-client bucket and a per-client, per-model bucket, all
  at 1e9 calls/s so that no call is refused; callers send ``authorization: Bearer KEY``.
- ``tfgate-jwt``: the same, the bearer token an HS256 JWT (minted here with PyJWT) checked
  against a JWKS file; tfgate verifies it on the first call and serves it from its cache after.

Every call must still be answered: the checks of bench/load.py hold (real calls first, then
h2load's status counts and one good answer's DATA bytes per call; a refused gRPC call answers
trailers-only, without DATA). Before that, ``check_enforced`` proves the gate is on: a call
without credentials must be refused with UNAUTHENTICATED, so a config that left auth off cannot
pass for a cheap one.

The key and the HMAC secret are the bench's own, made for each run; the gateway listens on
127.0.0.1 only while it is measured.

``python -m bench.access``: the same gate in-process, ``Gate.admit`` timed per call (no network,
no gRPC), for reference.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt
import orjson

from bench import messages, report
from bench.messages import MODEL
from tfgate.calls import Call, Credentials
from tfgate.config import load
from tfgate.policy.config import PolicyConfig
from tfgate.policy.gate import Gate
from tfgate.policy.keys import digest

CLIENT = "bench"
# Far above any rate the rig reaches: the buckets are consulted on every call, never empty.
RATE = 1e9
PATHS = report.ACCESS_PATHS


@dataclass(frozen=True)
class Access:
    """A generated config for one path, and the metadata its callers send."""

    config: Path
    headers: tuple[tuple[str, str], ...]


def _limits() -> str:
    return (
        f"[limits]\nrate = {RATE:.0f}\nclient_rate = {RATE:.0f}\n\n"
        f"[limits.clients.{CLIENT}]\n"
        f'models = {{ "*" = {{ rate = {RATE:.0f} }} }}\n'
    )


def write_config(name: str, workdir: Path) -> Access:
    """Writes the config file (and keys file or JWKS file) of path ``name`` into ``workdir``."""
    if name not in PATHS:
        raise ValueError(f"no access-control path {name!r}; expected one of {', '.join(PATHS)}")
    directory = workdir / name
    directory.mkdir(exist_ok=True)
    rights = f'[clients.{CLIENT}]\nmodels = ["*"]\n'
    if name == "tfgate-auth":
        key = secrets.token_urlsafe(32)
        keys = directory / "keys.toml"
        keys.write_text(f'[keys.{CLIENT}]\nsha256 = ["{digest(key).hex()}"]\n')
        auth = f'[auth]\nenabled = true\nkeys_file = "{keys}"\n'
    else:
        secret = secrets.token_bytes(32)
        jwks = directory / "jwks.json"
        k = base64.urlsafe_b64encode(secret).rstrip(b"=").decode()
        jwks.write_bytes(orjson.dumps({"keys": [{"kty": "oct", "kid": "bench", "k": k}]}))
        auth = f'[auth]\nenabled = true\n\n[auth.jwt]\njwks_file = "{jwks}"\naudience = "tfgate"\n'
        key = jwt.encode(
            {"sub": CLIENT, "aud": "tfgate", "exp": int(time.time()) + 3600},
            secret,
            algorithm="HS256",
            headers={"kid": "bench"},
        )
    config = directory / "tfgate.toml"
    config.write_text("\n".join((auth, rights, _limits())))
    return Access(config, (("authorization", f"Bearer {key}"),))


def check_enforced(target: str, method: str) -> None:
    """Raises RuntimeError unless a Predict without credentials is refused as unauthenticated."""
    request = messages.domain_predict_request(messages.inputs("small"))
    with grpc.insecure_channel(target) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        try:
            call(request, timeout=30)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                return
            raise RuntimeError(f"{target}: a call without a key got {exc.code().name}") from None
    raise RuntimeError(f"{target}: a call without a key was answered: authentication is off")


def gate_of(access: Access) -> Gate:
    """The Gate tfgate builds from ``access``'s config file."""
    config = load({}, {}, str(access.config))
    return Gate.from_config(config.policy, limits=config.limits)


def admit_cost(name: str, workdir: Path, calls: int = 20_000, repeats: int = 5) -> dict[str, float]:
    """In-process: µs per ``Gate.admit`` of a Predict with path ``name``'s credentials (a fresh
    Call each time, as each call brings), and of a gate with everything off; best of
    ``repeats`` loops of ``calls``, as timeit reports."""
    made = write_config(name, workdir)
    authorization = dict(made.headers)["authorization"]
    on, off = gate_of(made), Gate(PolicyConfig())

    async def loop(gate: Gate, presented: Credentials) -> float:
        await gate.start()
        try:
            await gate.admit(Call("grpc", "Predict", 0.0, credentials=presented), "Predict", MODEL)
            began = time.perf_counter()
            for _ in range(calls):
                call = Call("grpc", "Predict", 0.0, credentials=presented)
                await gate.admit(call, "Predict", MODEL)
            return (time.perf_counter() - began) / calls * 1e6
        finally:
            await gate.close()

    with_key = Credentials(authorization=authorization)
    best_on = min(asyncio.run(loop(on, with_key)) for _ in range(repeats))
    best_off = min(asyncio.run(loop(off, with_key)) for _ in range(repeats))
    return {"admit_us": best_on, "open_gate_us": best_off, "added_us": best_on - best_off}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tfgate-access-") as directory:
        for name in PATHS:
            cost = admit_cost(name, Path(directory))
            print(
                f"{name}: Gate.admit {cost['admit_us']:.2f} µs per call, an open gate "
                f"{cost['open_gate_us']:.2f} µs: {cost['added_us']:+.2f} µs (best of 5 x 20,000)"
            )


if __name__ == "__main__":
    main()
