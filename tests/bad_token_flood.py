"""A flood of calls with bad bearer tokens, from a process of its own (so that the caller's own
work does not slow the gateway's event loop in the test that measures it).

``python -m tests.bad_token_flood PORT COUNT CONCURRENCY SECONDS`` sends COUNT tfgate.v1
Predicts to 127.0.0.1:PORT, CONCURRENCY at a time, each with a different bad token (random
keys, JWT-shaped garbage, and JWTs whose RS256 signature does not verify), stopping after
SECONDS at the latest; it prints one JSON line: {"sent": N, "codes": {"UNAUTHENTICATED": N}}.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import sys
import time

import grpc

from tfgate.v1 import inference_pb2, inference_pb2_grpc


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bad_token(i: int) -> str:
    """The i-th bad token: a random key, a random three-part string, or a forged RS256 JWT."""
    kind = i % 3
    if kind == 0:
        return _b64(os.urandom(24))
    if kind == 1:
        return ".".join(_b64(os.urandom(n)) for n in (20, 40, 32))
    header = _b64(json.dumps({"alg": "RS256", "kid": "r1", "typ": "JWT"}).encode())
    now = int(time.time())
    claims = {"sub": f"forger-{i}", "exp": now + 600, "aud": "tfgate"}
    return f"{header}.{_b64(json.dumps(claims).encode())}.{_b64(os.urandom(256))}"


async def flood(port: int, count: int, concurrency: int, seconds: float) -> dict[str, object]:
    codes: collections.Counter[str] = collections.Counter()
    sent = 0
    stop_at = time.monotonic() + seconds
    request = inference_pb2.PredictRequest(model="half_plus_two")
    request.inputs["x"].floats.extend([1.0, 2.0])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)

        async def worker() -> None:
            nonlocal sent
            while sent < count and time.monotonic() < stop_at:
                i = sent
                sent += 1
                metadata = (("authorization", f"Bearer {bad_token(i)}"),)
                try:
                    await stub.Predict(request, metadata=metadata, timeout=10)
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code().name] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"sent": sent, "codes": dict(codes)}


def main() -> None:
    port, count, concurrency, seconds = sys.argv[1:5]
    result = asyncio.run(flood(int(port), int(count), int(concurrency), float(seconds)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
