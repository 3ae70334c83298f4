"""The pure parts of the benchmark (bench/h2load.py): gRPC framing, h2load's printout and log,
percentiles."""

from __future__ import annotations

import math
import struct

import pytest

from bench import h2load

OUTPUT = """\
starting benchmark...
spawning thread #0: 1 total client(s). Timing-based test with 0s of warm-up time and 3s of main \
duration for measurements.
Application protocol: h2c

finished in 3.01s, 1681.33 req/s, 220.73KB/s
requests: 5044 total, 5060 started, 5044 done, 5044 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 5060 2xx, 0 3xx, 2 4xx, 1 5xx
traffic: 662.19KB (678087) total, 14.85KB (15207) headers (space savings 96.28%), 374.36KB \
(383344) data
                     min         max         mean         sd        +/- sd
time for request:      849us     1.65s      9.48ms      1.39ms    84.22%
time for connect:       97us        97us        97us         0us   100.00%
time to 1st byte:     5.79ms      5.79ms      5.79ms         0us   100.00%
req/s           :    1681.11     1681.11     1681.11        0.00   100.00%
"""


def test_grpc_frame_is_flag_length_message() -> None:
    framed = h2load.grpc_frame(b"\x0a\x03abc")
    assert framed[0] == 0
    assert struct.unpack(">I", framed[1:5]) == (5,)
    assert framed[5:] == b"\x0a\x03abc"
    assert h2load.grpc_frame(b"") == b"\x00\x00\x00\x00\x00"


def test_grpc_frame_length_is_big_endian() -> None:
    assert h2load.grpc_frame(b"x" * 602171)[:5] == b"\x00\x00\x09\x30\x3b"


def test_parse_output_reads_the_counters() -> None:
    summary = h2load.parse_output(OUTPUT)
    assert summary.seconds == 3.01
    assert summary.rps == 1681.33
    assert (summary.done, summary.succeeded, summary.failed) == (5044, 5044, 0)
    assert (summary.errored, summary.timeout) == (0, 0)
    assert summary.status_2xx == 5060
    assert summary.status_other == 3
    assert summary.data_bytes == 383344
    assert summary.mean_ms == pytest.approx(9.48)
    assert summary.max_ms == pytest.approx(1650.0)


def test_parse_output_refuses_a_truncated_printout() -> None:
    with pytest.raises(ValueError, match="requests"):
        h2load.parse_output("finished in 3.01s, 1681.33 req/s, 220.73KB/s\n")


def test_parse_log_gives_milliseconds() -> None:
    log = "1795744598620410\t200\t5547\n1795744598620414\t200\t13062\n\n"
    assert h2load.parse_log(log) == [5.547, 13.062]


def test_percentile_interpolates_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert h2load.percentile(values, 50) == 2.5
    assert h2load.percentile(values, 0) == 1.0
    assert h2load.percentile(values, 100) == 4.0
    assert h2load.percentile(values, 99) == pytest.approx(3.97)
    assert h2load.percentile([7.0], 99) == 7.0
    assert math.isnan(h2load.percentile([], 50))


def test_command_drives_one_connection_with_c_streams(tmp_path) -> None:
    body = tmp_path / "req.bin"
    args = h2load.command("http://127.0.0.1:1/p/M", body, 64, 10, log_file=tmp_path / "log")
    assert args[:8] == ["h2load", "-D", "10000ms", "-c", "1", "-m", "64", "-t"]
    assert ["-d", str(body)] == args[args.index("-d") : args.index("-d") + 2]
    assert "content-type: application/grpc" in args
    assert "te: trailers" in args
    assert args[-1] == "http://127.0.0.1:1/p/M"
    spread = h2load.command("http://x/M", body, 64, 0.5, connections=4)
    assert spread[1:7] == ["-D", "500ms", "-c", "4", "-m", "16"]
