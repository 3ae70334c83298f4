"""The pure parts of the benchmark (bench/h2load.py, bench/messages.py): gRPC framing, h2load's
printout, log and command lines, the checks of its counters, percentiles, the HTTP paths'
bodies and answer checks."""

from __future__ import annotations

import dataclasses
import math
import struct
from typing import Any

import orjson
import pytest

from bench import h2load, messages

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


H1_OUTPUT = """\
starting benchmark...
spawning thread #0: 64 total client(s). Timing-based test with 0s of warm-up time and 2s of \
main duration for measurements.
Application protocol: http/1.1

finished in 2.01s, 2971.00 req/s, 513.54KB/s
requests: 5942 total, 6006 started, 5942 done, 5942 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 5942 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 1.00MB (1051734) total, 632.50KB (647678) headers (space savings 0.00%), 191.49KB \
(196086) data
                     min         max         mean         sd        +/- sd
time for request:     3.91ms     86.92ms     21.45ms     13.02ms    82.78%
time for connect:       23us      1.18ms       335us       295us    81.25%
time to 1st byte:    66.97ms     86.96ms     76.74ms      5.38ms    56.25%
req/s           :      45.46       47.45       46.35        0.33    62.50%
"""


def test_parse_output_reads_an_http1_printout() -> None:
    summary = h2load.parse_output(H1_OUTPUT)
    assert (summary.seconds, summary.rps, summary.done) == (2.01, 2971.0, 5942)
    assert summary.data_bytes == 196086  # response bodies: 33 bytes each
    assert summary.data_bytes == 33 * summary.done
    assert summary.mean_ms == pytest.approx(21.45)


def test_http1_command_opens_one_connection_per_call_in_flight(tmp_path) -> None:
    body = tmp_path / "req.json"
    args = h2load.command("http://127.0.0.1:1/v1/models/m:predict", body, 64, 3, http1=True)
    assert args[1:7] == ["-D", "3000ms", "-c", "64", "-m", "1"]
    assert "--h1" in args
    assert ["-d", str(body)] == args[args.index("-d") : args.index("-d") + 2]
    assert args[args.index("-H") : args.index("-H") + 2] == ["-H", "content-type: application/json"]
    assert "te: trailers" not in args
    assert "--h1" not in h2load.command("http://x/M", body, 64, 3)
    assert h2load.connections_for(16, http1=True) == (16, 1)
    assert h2load.connections_for(16) == (1, 16)


def _summary(**changes: int) -> h2load.Summary:
    good = h2load.parse_output(H1_OUTPUT)
    return dataclasses.replace(good, **changes)


def test_problems_accept_good_answers_and_name_bad_ones() -> None:
    assert h2load.problems(_summary(), 33, 64, "body") == []
    # Answers still arriving at the end may add up to one answer per call in flight.
    assert h2load.problems(_summary(data_bytes=33 * 5942 + 33 * 64), 33, 64, "body") == []
    (short,) = h2load.problems(_summary(data_bytes=33 * 5942 - 1), 33, 64, "body")
    assert "196085 body bytes for 5942 answers of 33 bytes" in short
    (long,) = h2load.problems(_summary(), 32, 64, "body")
    assert "not good ones" in long
    (status,) = h2load.problems(_summary(status_other=2), 33, 64, "body")
    assert "2 not 2xx" in status
    (failed,) = h2load.problems(_summary(failed=1, timeout=3), 33, 64)
    assert "1 failed" in failed and "3 timeout" in failed
    assert h2load.problems(_summary(done=0, data_bytes=0), 33, 64) == ["no request completed"]


X = messages.inputs("small")


def test_http_bodies_are_tf_servings_and_tfgate_v1s_json() -> None:
    assert orjson.loads(messages.rest_predict_body(X)) == {"instances": [1.0, 2.0, 5.0, -3.0]}
    assert orjson.loads(messages.v1_json_predict_body(X)) == {
        "inputs": {"x": {"floats": [1.0, 2.0, 5.0, -3.0]}}
    }


def test_check_rest_response_takes_y_and_refuses_anything_else() -> None:
    messages.check_rest_response(b'{"predictions":[2.5,3.0,4.5,0.5]}', X)
    refused = [
        b'{"predictions":[2.5,3.0,4.5,0.6]}',  # a wrong value
        b'{"predictions":[2.5,3.0,4.5]}',  # one missing
        b'{"predictions":[[2.5,3.0,4.5,0.5]]}',  # another shape
        b'{"outputs":[2.5,3.0,4.5,0.5]}',  # columnar, not row format
        b'{"error":"Servable not found"}',
        b"[2.5,3.0,4.5,0.5]",
        b"<html>",
    ]
    for answer in refused:
        with pytest.raises(ValueError):
            messages.check_rest_response(answer, X)


def test_check_v1_json_response_takes_y_and_refuses_anything_else() -> None:
    good: dict[str, Any] = {
        "model": "half_plus_two",
        "version": "1",
        "outputs": {"y": {"shape": ["4"], "floats": [2.5, 3.0, 4.5, 0.5], "dtype": "float32"}},
    }
    messages.check_v1_json_response(orjson.dumps(good), X)
    refused = [
        {**good, "model": "other"},
        {**good, "outputs": {"z": good["outputs"]["y"]}},
        {**good, "outputs": [1]},
        {**good, "outputs": {"y": {"floats": [2.5, 3.0, 4.5, 1.5]}}},
        {"code": "NOT_FOUND", "message": "no model"},
    ]
    for answer in refused:
        with pytest.raises(ValueError):
            messages.check_v1_json_response(orjson.dumps(answer), X)
