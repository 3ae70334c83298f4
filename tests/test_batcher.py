"""tfgate.batcher: the window, the size and deadline rules, cancellation and errors, against a
backend that answers each row with its value plus one (or fails as told)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfgate import dtypes, tensors
from tfgate.batcher import Batcher, BatchingConfig, configs
from tfgate.calls import Call
from tfgate.config import ConfigError, read_file
from tfgate.errors import (
    BackendError,
    BadBackendAnswer,
    Code,
    DeadlineExceeded,
    FailedPrecondition,
    ResourceExhausted,
)
from tfgate.plans import config as pipeline_config
from tfgate.tfs.tensorflow.core.framework import types_pb2
from tfgate.tfs.tensorflow_serving.apis import model_pb2, predict_pb2

F32 = dtypes.BY_NAME["float32"]


def data(rows: list[list[float]]) -> bytes:
    made = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="m"))
    made.inputs["x"].CopyFrom(tensors.to_proto(np.array(rows, dtype=np.float32), F32))
    return made.SerializeToString()


def call(timeout: float = 10.0) -> Call:
    return Call("grpc", "Predict", time.monotonic() + timeout, request_id="r")


def values(answer: predict_pb2.PredictResponse) -> list[list[float]]:
    found: list[list[float]] = tensors.from_proto("y", answer.outputs["y"])[1].tolist()
    return found


class Backend:
    """Answers y = x + 1 row by row; records what it was sent; can hold or fail calls."""

    def __init__(self) -> None:
        self.sent: list[tuple[predict_pb2.PredictRequest, Call]] = []
        self.hold: asyncio.Event | None = None
        self.fail: BaseException | None = None
        self.reduce = False  # answer one row for the whole batch
        self.answer: predict_pb2.PredictResponse | None = None  # sent instead, when set
        self.arrived = asyncio.Event()  # set once something was sent

    async def send(self, raw: bytes, call: Call) -> predict_pb2.PredictResponse:
        request = predict_pb2.PredictRequest.FromString(raw)
        self.sent.append((request, call))
        self.arrived.set()
        call.attempts += 1
        if self.hold is not None:
            await self.hold.wait()
        if self.fail is not None:
            raise self.fail
        if self.answer is not None:
            return self.answer
        x = tensors.from_proto("x", request.inputs["x"])[1]
        y = x.sum(axis=0, keepdims=True) if self.reduce else x + 1
        out = predict_pb2.PredictResponse(model_spec=request.model_spec)
        out.outputs["y"].CopyFrom(tensors.to_proto(y, F32))
        return out

    def rows(self) -> list[int]:
        return [r.inputs["x"].tensor_shape.dim[0].size for r, _ in self.sent]


def batcher(backend: Backend, *, busy: bool = True, **settings: Any) -> Batcher:
    """A Batcher before ``backend``; ``busy``: as if another call of the model were at TF
    Serving all along, so that every call waits for its window (an idle model sends a call at
    once)."""
    config = BatchingConfig(**{"max_delay": 0.02, "max_batch_size": 8, **settings})
    made = Batcher("m", config, backend.send, 10_000)
    made.in_flight += busy
    return made


@pytest.mark.asyncio
async def test_calls_in_one_window_go_as_one_batch_and_get_their_own_rows() -> None:
    backend = Backend()
    gather = batcher(backend)
    answers = await asyncio.gather(
        gather.predict(data([[1.0, 2.0]]), call(), 3, "serving_default"),
        gather.predict(data([[10.0, 20.0], [30.0, 40.0]]), call(), 3, "serving_default"),
    )
    assert backend.rows() == [3]
    sent, batch_call = backend.sent[0]
    assert sent.model_spec.version.value == 3
    assert sent.model_spec.signature_name == "serving_default"
    assert values(answers[0]) == [[2.0, 3.0]]
    assert values(answers[1]) == [[11.0, 21.0], [31.0, 41.0]]
    assert batch_call.request_id == "r+1"
    assert gather.batches == 1 and gather.batched_calls == 2


@pytest.mark.asyncio
async def test_a_call_to_an_idle_model_is_sent_at_once_and_the_next_ones_gather() -> None:
    backend = Backend()
    backend.hold = asyncio.Event()
    gather = batcher(backend, busy=False, max_delay=0.2)
    raw, first = data([[1.0]]), call()
    alone = asyncio.create_task(gather.predict(raw, first, 3, "serving_default"))
    await backend.arrived.wait()  # at once: nothing else of the model was out
    assert backend.sent[0][0].SerializeToString() == raw and first.batch == 1
    assert gather.in_flight == 1
    later = [
        asyncio.create_task(gather.predict(data([[x]]), call(), 3, "serving_default"))
        for x in (2.0, 3.0)
    ]
    await asyncio.sleep(0.02)
    assert len(backend.sent) == 1  # the next calls wait for their window
    backend.hold.set()
    assert values(await alone) == [[2.0]]
    answers = await asyncio.gather(*later)  # after the window, though the model is idle now
    assert [values(a) for a in answers] == [[[3.0]], [[4.0]]]
    assert backend.rows() == [1, 2] and gather.in_flight == 0


@pytest.mark.asyncio
async def test_a_batch_of_one_is_the_call_itself_after_the_window() -> None:
    backend = Backend()
    gather = batcher(backend, max_delay=0.05)
    raw, mine = data([[1.0]]), call()
    started = time.monotonic()
    answer = await gather.predict(raw, mine, 3, "serving_default")
    waited = time.monotonic() - started
    assert waited >= 0.045
    assert backend.sent[0][0].SerializeToString() == raw  # unchanged: no version written in
    assert backend.sent[0][1] is mine and mine.attempts == 1
    assert values(answer) == [[2.0]]


@pytest.mark.asyncio
async def test_a_full_batch_goes_at_once() -> None:
    backend = Backend()
    gather = batcher(backend, max_delay=1.0, max_batch_size=2)
    started = time.monotonic()
    await asyncio.gather(
        gather.predict(data([[1.0]]), call(), 1, ""), gather.predict(data([[2.0]]), call(), 1, "")
    )
    assert time.monotonic() - started < 0.5
    assert backend.rows() == [2]


@pytest.mark.asyncio
async def test_a_call_that_does_not_fit_sends_the_open_batch_and_opens_the_next() -> None:
    backend = Backend()
    gather = batcher(backend, max_batch_size=3)
    answers = await asyncio.gather(
        gather.predict(data([[1.0], [2.0]]), call(), 1, ""),
        gather.predict(data([[3.0], [4.0]]), call(), 1, ""),
    )
    assert backend.rows() == [2, 2]
    assert [values(a) for a in answers] == [[[2.0], [3.0]], [[4.0], [5.0]]]


@pytest.mark.asyncio
async def test_a_batch_never_joins_more_bytes_than_a_message_may_hold() -> None:
    backend = Backend()
    one = data([[1.0]])
    config = BatchingConfig(max_delay=0.02, max_batch_size=8)
    gather = Batcher("m", config, backend.send, 10_000, max_bytes=2 * len(one) + 1)
    gather.in_flight += 1  # busy: every call waits for its window
    answers = await asyncio.gather(
        *(gather.predict(data([[float(i)]]), call(), 1, "") for i in range(5))
    )
    assert backend.rows() == [2, 2, 1]
    assert [values(a) for a in answers] == [[[float(i + 1)]] for i in range(5)]


@pytest.mark.asyncio
async def test_more_rows_than_a_batch_holds_go_alone_at_once() -> None:
    backend = Backend()
    gather = batcher(backend, max_delay=1.0, max_batch_size=2)
    started = time.monotonic()
    await gather.predict(data([[1.0], [2.0], [3.0]]), call(), 1, "")
    assert time.monotonic() - started < 0.5 and backend.rows() == [3]


@pytest.mark.asyncio
async def test_a_deadline_inside_the_window_sends_the_batch_at_once() -> None:
    backend = Backend()
    gather = batcher(backend, max_delay=1.0)
    waiting = asyncio.create_task(gather.predict(data([[1.0]]), call(), 1, ""))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    hurried = await gather.predict(data([[2.0]]), call(timeout=0.5), 1, "")
    assert time.monotonic() - started < 0.4
    assert values(hurried) == [[3.0]]
    assert values(await waiting) == [[2.0]]
    assert backend.rows() == [2]  # the one already waiting went with it


@pytest.mark.asyncio
async def test_mixed_shapes_versions_and_signatures_are_never_merged() -> None:
    backend = Backend()
    gather = batcher(backend)
    await asyncio.gather(
        gather.predict(data([[1.0]]), call(), 1, ""),
        gather.predict(data([[1.0, 2.0]]), call(), 1, ""),  # other trailing dimension
        gather.predict(data([[1.0]]), call(), 2, ""),  # other version
        gather.predict(data([[1.0]]), call(), 1, "other"),  # other signature
    )
    assert sorted(backend.rows()) == [1, 1, 1, 1]


@pytest.mark.asyncio
async def test_a_caller_gone_before_the_batch_is_sent_takes_its_rows_out() -> None:
    backend = Backend()
    gather = batcher(backend, max_delay=0.05)
    leaving = asyncio.create_task(gather.predict(data([[1.0], [2.0]]), call(), 1, ""))
    staying = asyncio.create_task(gather.predict(data([[5.0]]), call(), 1, ""))
    await asyncio.sleep(0.01)
    leaving.cancel()
    assert values(await staying) == [[6.0]]
    assert backend.rows() == [1]
    assert gather.enqueued == 0
    with pytest.raises(asyncio.CancelledError):
        await leaving


@pytest.mark.asyncio
async def test_a_caller_gone_after_the_batch_is_sent_leaves_the_others_their_answers() -> None:
    backend = Backend()
    backend.hold = asyncio.Event()
    gather = batcher(backend, max_delay=0.01)
    leaving = asyncio.create_task(gather.predict(data([[1.0]]), call(), 1, ""))
    staying = asyncio.create_task(gather.predict(data([[5.0]]), call(), 1, ""))
    await backend.arrived.wait()
    leaving.cancel()
    await asyncio.sleep(0.01)
    backend.hold.set()
    assert values(await staying) == [[6.0]]
    with pytest.raises(asyncio.CancelledError):
        await leaving


@pytest.mark.asyncio
async def test_the_backend_call_is_cancelled_once_nobody_waits_for_it() -> None:
    backend = Backend()
    backend.hold = asyncio.Event()
    gather = batcher(backend, max_delay=0.01)
    tasks = [asyncio.create_task(gather.predict(data([[1.0]]), call(), 1, "")) for _ in range(2)]
    await backend.arrived.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.01)
    assert backend.hold is not None and not backend.hold.is_set()
    assert all(t.cancelled() for t in tasks)
    # The send task itself was cancelled: nothing is left running.
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not pending


@pytest.mark.asyncio
async def test_a_member_whose_deadline_passes_at_tf_serving_gets_deadline_exceeded() -> None:
    backend = Backend()
    backend.hold = asyncio.Event()
    gather = batcher(backend, max_delay=0.01)
    short = asyncio.create_task(gather.predict(data([[1.0]]), call(timeout=0.1), 1, ""))
    long = asyncio.create_task(gather.predict(data([[5.0]]), call(timeout=5.0), 1, ""))
    with pytest.raises(DeadlineExceeded, match="while its batch of model 'm' was at TF Serving"):
        await short
    backend.hold.set()
    assert values(await long) == [[6.0]]
    assert backend.rows() == [2]


@pytest.mark.asyncio
async def test_tf_servings_error_reaches_every_member_each_its_own() -> None:
    backend = Backend()
    backend.fail = BackendError(Code.UNAVAILABLE, "TF Serving is down", Code.UNAVAILABLE)
    gather = batcher(backend)
    found = await asyncio.gather(
        gather.predict(data([[1.0]]), call(), 1, ""),
        gather.predict(data([[2.0]]), call(), 1, ""),
        return_exceptions=True,
    )
    assert all(isinstance(e, BackendError) for e in found)
    assert [(e.code, e.message, e.backend_code) for e in found] == [  # type: ignore[union-attr]
        (Code.UNAVAILABLE, "TF Serving is down", Code.UNAVAILABLE)
    ] * 2
    assert found[0] is not found[1]
    assert backend.rows() == [2]


@pytest.mark.asyncio
async def test_a_model_that_reduces_over_the_batch_is_refused_then_sent_one_by_one() -> None:
    backend = Backend()
    backend.reduce = True
    gather = batcher(backend, max_delay=1.0, max_batch_size=2)  # two: sent at once
    found = await asyncio.gather(
        gather.predict(data([[1.0]]), call(), 1, ""),
        gather.predict(data([[2.0]]), call(), 1, ""),
        return_exceptions=True,
    )
    for exc in found:
        assert isinstance(exc, FailedPrecondition)
        assert "output 'y' has shape [1, 1]" in exc.message
    assert gather.unbatchable == "y"
    started = time.monotonic()
    alone = await gather.predict(data([[4.0]]), call(), 1, "")
    assert time.monotonic() - started < 0.5  # no window any more
    assert values(alone) == [[4.0]]


@pytest.mark.asyncio
async def test_calls_over_max_enqueued_are_refused() -> None:
    backend = Backend()
    gather = batcher(backend, max_enqueued=1, max_delay=0.05)
    first = asyncio.create_task(gather.predict(data([[1.0]]), call(), 1, ""))
    await asyncio.sleep(0)
    with pytest.raises(ResourceExhausted, match="max_enqueued"):
        await gather.predict(data([[2.0]]), call(), 1, "")
    assert values(await first) == [[2.0]]


@pytest.mark.asyncio
async def test_padding_goes_to_tf_serving_and_not_to_the_callers() -> None:
    backend = Backend()
    gather = batcher(backend, max_batch_size=4, allowed_batch_sizes=(2, 4))
    answers = await asyncio.gather(
        gather.predict(data([[1.0]]), call(), 1, ""),
        gather.predict(data([[2.0], [3.0]]), call(), 1, ""),
    )
    assert backend.rows() == [4]
    assert [values(a) for a in answers] == [[[2.0]], [[3.0], [4.0]]]


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_delay": 0.0}, "max_delay"),
        ({"max_delay": 2.0}, "max_delay"),
        ({"max_enqueued": 0}, "max_enqueued"),
        ({"max_batch_size": 8, "allowed_batch_sizes": (4, 2, 8)}, "allowed_batch_sizes"),
        ({"max_batch_size": 8, "allowed_batch_sizes": (2, 4)}, "allowed_batch_sizes"),
    ],
)
def test_settings_are_checked(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        BatchingConfig(**settings)


@pytest.mark.asyncio
async def test_calls_of_different_clients_are_batched_apart_when_clients_have_shares() -> None:
    backend = Backend()
    config = BatchingConfig(max_delay=0.02, max_batch_size=8)
    for per_client, rows in ((True, [2, 1]), (False, [3])):
        backend.sent.clear()
        gather = Batcher("m", config, backend.send, 10_000, per_client=per_client)
        gather.in_flight += 1  # busy: every call waits for its window
        calls = [call(), call(), call()]
        for made, client in zip(calls, ("alice", "alice", "bob"), strict=True):
            made.client = client
        answers = await asyncio.gather(
            *(gather.predict(data([[float(i)]]), c, 1, "") for i, c in enumerate(calls))
        )
        assert sorted(backend.rows(), reverse=True) == rows
        assert [values(a) for a in answers] == [[[1.0]], [[2.0]], [[3.0]]]
        assert {c.client for _, c in backend.sent} <= {"alice", "bob"}


@pytest.mark.asyncio
async def test_an_idle_model_pads_a_lone_call_and_sends_it_at_once() -> None:
    backend = Backend()
    gather = batcher(
        backend, busy=False, max_delay=1.0, max_batch_size=4, allowed_batch_sizes=(2, 4)
    )
    started = time.monotonic()
    answer = await gather.predict(data([[5.0]]), call(), 1, "")
    assert time.monotonic() - started < 0.5  # not the 1 s window
    assert backend.rows() == [2] and values(answer) == [[6.0]]


@pytest.mark.asyncio
async def test_padding_counts_against_the_message_bytes() -> None:
    backend = Backend()
    one = data([[1.0]])
    config = BatchingConfig(max_delay=0.02, max_batch_size=8, allowed_batch_sizes=(4, 8))
    gather = Batcher("m", config, backend.send, 10_000, max_bytes=3 * len(one))
    gather.in_flight += 1
    answers = await asyncio.gather(gather.predict(one, call(), 1, ""))
    assert backend.rows() == [1]  # padded to 4 it would not fit: sent as it is
    assert [values(a) for a in answers] == [[[2.0]]]


@pytest.mark.asyncio
async def test_a_batch_answer_is_checked_before_it_is_cut() -> None:
    backend = Backend()
    # max_tensor_elements over the broadcast's 8M values: the expansion itself is refused.
    gather = Batcher("m", BatchingConfig(max_delay=0.01), backend.send, 10_000_000)
    gather.in_flight += 1
    both = predict_pb2.PredictResponse()
    y = tensors.to_proto(np.array([[1.0], [2.0]], dtype=np.float32), F32)
    y.float_val.extend([1.0, 2.0])  # values in two places: refused, never one of them kept
    both.outputs["y"].CopyFrom(y)
    broadcast = predict_pb2.PredictResponse()
    wide = broadcast.outputs["y"]
    wide.dtype = types_pb2.DT_FLOAT
    wide.tensor_shape.dim.add(size=2)
    wide.tensor_shape.dim.add(size=4_000_000)
    wide.float_val.append(1.0)  # 28 bytes that would expand to 32 MB
    for answer, needle in ((both, "values in both"), (broadcast, "tfgate fills in at most")):
        backend.answer = answer
        caught = await asyncio.gather(
            gather.predict(data([[1.0]]), call(), 1, ""),
            gather.predict(data([[2.0]]), call(), 1, ""),
            return_exceptions=True,
        )
        for exc in caught:
            assert isinstance(exc, BadBackendAnswer) and needle in exc.message
            assert exc.__cause__ is not None  # where it was raised, for the log
        assert caught[0] is not caught[1]


# -- [models.NAME.batching] in the config file ----------------------------------------------


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"max_batch_size": 0}, "[models.m.batching] max_batch_size: must be at least 1"),
        ({"max_batch_size": 4.5}, "[models.m.batching] max_batch_size: must be a whole"),
        ({"max_batch_size": True}, "[models.m.batching] max_batch_size: must be a number"),
        ({"max_delay": "2"}, "[models.m.batching] max_delay: must be a number"),
        ({"max_delay": 0}, "[models.m.batching] max_delay: must be over 0 and at most 1000 ms"),
        ({"max_delay": 1001}, "[models.m.batching] max_delay: must be over 0"),
        ({"max_delay": float("nan")}, "[models.m.batching] max_delay: must be over 0"),
        ({"max_enqueued": -3}, "[models.m.batching] max_enqueued: must be at least 1"),
        ({"allowed_batch_sizes": 8}, "[models.m.batching] allowed_batch_sizes: must be a list"),
        ({"allowed_batch_sizes": [2, "4"]}, "allowed_batch_sizes: must be a number"),
        ({"allowed_batch_sizes": [4, 2, 32]}, "allowed_batch_sizes: must be positive and"),
        ({"allowed_batch_sizes": [4, 16]}, "the last (16) must equal max_batch_size (32)"),
        ({"max_wait": 2}, "[models.m.batching]: unknown setting 'max_wait'"),
        ([1], "[models.m.batching]: must be a table"),
    ],
)
def test_bad_batching_tables_are_refused_by_name(table: object, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        configs("t.toml", {"models": {"m": {"batching": table}}})
    assert needle in str(caught.value)
    assert str(caught.value).startswith("config file t.toml: ")


def test_batching_tables_are_read_with_max_delay_in_milliseconds() -> None:
    data = {
        "models": {
            "m": {"batching": {}},
            "n": {"batching": {"max_delay": 5, "max_batch_size": 8, "max_enqueued": 64}},
            "o": {"batching": {"max_batch_size": 16, "allowed_batch_sizes": [4, 8, 16]}},
            "p": {"cache": {"ttl": 1, "max_bytes": 100}},
        }
    }
    assert configs("t.toml", data) == {
        "m": BatchingConfig(),  # an empty table turns batching on with the defaults
        "n": BatchingConfig(max_batch_size=8, max_delay=0.005, max_enqueued=64),
        "o": BatchingConfig(max_batch_size=16, allowed_batch_sizes=(4, 8, 16)),
    }
    assert BatchingConfig() == BatchingConfig(32, 0.002, (), 1024)


def test_a_batching_only_section_keeps_the_identity_plan(tmp_path: Path) -> None:
    path = tmp_path / "tfgate.toml"
    path.write_text(
        "[models.half_plus_two.batching]\nmax_delay = 1\n"
        "[models.iris.batching]\n[models.iris.cache]\nttl = 5\nmax_bytes = 1000\n"
        '[models.sentiment]\nsignature = "serving_default"\n'
        "[models.sentiment.batching]\nmax_batch_size = 4\n"
    )
    data = read_file(str(path))
    assert list(pipeline_config.load(str(path), data)) == ["sentiment"]
    assert configs(str(path), data) == {
        "half_plus_two": BatchingConfig(max_delay=0.001),
        "iris": BatchingConfig(),
        "sentiment": BatchingConfig(max_batch_size=4),
    }


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ("[models.iris.batching]\nmax_delay = 0\n", "[models.iris.batching] max_delay:"),
        ("[models.iris.cache]\nttl = 5\n", "[models.iris.cache] max_bytes: required"),
    ],
)
def test_tfgate_serve_refuses_a_bad_batching_or_cache_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, needle: str
) -> None:
    from tfgate import cli

    path = tmp_path / "tfgate.toml"
    path.write_text(table)
    assert cli.main(["serve", "--backend", "127.0.0.1:1", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tfgate: configuration error: config file {path}: ")
    assert needle in err
