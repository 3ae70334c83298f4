"""Pre/postprocessing end to end: tfgate with [models.NAME] sections, in front of a fake TF Serving.

The fake models record what they were fed, so each step is checked on what reached the backend.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import pytest_asyncio

from tests.conftest import Running, StartGateway
from tests.fake_tfserving import Arrays, FakeTFServing, Model, Sig, Version, default_models
from tests.test_gateway import expect_error
from tests.test_grpcurl import grpcurl
from tfgate.plans import config as pipeline_config
from tfgate.plans.config import PipelineConfigError
from tfgate.plans.plan import Plans
from tfgate.tfs.tensorflow.core.framework import types_pb2
from tfgate.v1 import inference_pb2

pytestmark = pytest.mark.asyncio

T = inference_pb2.Tensor
PredictRequest = inference_pb2.PredictRequest
VOCAB = ["<pad>", "<unk>", "a", "the", "movie", "plot", "great", "good", "awful", "boring"]
POSITIVE, NEGATIVE = {6, 7}, {8, 9}
LENGTH = 16

CONFIG = """
[models.sentiment.inputs.text]
alias = "token_ids"
steps = [
  { op = "lowercase" },
  { op = "tokenize", pattern = "[a-z']+" },
  { op = "lookup", file = "assets/vocab.txt", oov_token = "<unk>" },
  { op = "pad", length = 16 },
]

[models.sentiment.outputs.label]
alias = "probabilities"
steps = [{ op = "labels", file = "assets/labels.txt", k = 2, scores_as = "score" }]

[models.iris.inputs.measurements]
alias = "features"
steps = [
  { op = "scale", factor = 10, offset = 0 },
  { op = "reshape", shape = [-1, 4] },
  { op = "normalize", file = "assets/stats.csv" },
  { op = "clip", min = -3, max = 3 },
]

[models.iris.outputs.species]
alias = "probabilities"
steps = [{ op = "labels", file = "assets/species.txt" }]

[models.iris.outputs.probabilities]

[models.knobs.inputs.x]
steps = [{ op = "expand", axis = -1 }, { op = "round" }, { op = "cast", dtype = "int16" }]

[models.knobs.inputs.temperature]
default = 0.5

[models.knobs.outputs.y_scaled]
alias = "y"
steps = [{ op = "scale", factor = [1, 100] }]
"""


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


class Recorder:
    """The fake models' functions; ``fed`` keeps every input array they were given."""

    def __init__(self) -> None:
        self.fed: list[Arrays] = []

    def sentiment(self, arrays: Arrays) -> Arrays:
        self.fed.append(arrays)
        ids = arrays["token_ids"]
        pos = np.isin(ids, list(POSITIVE)).sum(axis=1)
        neg = np.isin(ids, list(NEGATIVE)).sum(axis=1)
        logits = np.stack([2.0 * neg, np.full(len(ids), 0.5), 2.0 * pos], axis=1)
        return {"probabilities": softmax(logits)}

    def iris(self, arrays: Arrays) -> Arrays:
        self.fed.append(arrays)
        return {"probabilities": softmax(arrays["features"][:, :3])}

    def knobs(self, arrays: Arrays) -> Arrays:
        self.fed.append(arrays)
        y = arrays["x"].astype(np.float32) * arrays["temperature"][:, None]
        return {"y": np.concatenate([y, y], axis=1)}


def sentiment_sig(rec: Recorder, length: int = LENGTH) -> Sig:
    return Sig(
        inputs={"token_ids": (types_pb2.DT_INT64, (-1, length))},
        outputs={"probabilities": (types_pb2.DT_FLOAT, (-1, 3))},
        fn=rec.sentiment,
    )


def models(rec: Recorder) -> dict[str, Model]:
    return {
        **default_models(),
        "sentiment": Model(versions={1: Version({"serving_default": sentiment_sig(rec)})}),
        "iris": Model(
            versions={
                1: Version(
                    {
                        "serving_default": Sig(
                            inputs={"features": (types_pb2.DT_FLOAT, (-1, 4))},
                            outputs={"probabilities": (types_pb2.DT_FLOAT, (-1, 3))},
                            fn=rec.iris,
                        )
                    }
                )
            }
        ),
        "knobs": Model(
            versions={
                1: Version(
                    {
                        "serving_default": Sig(
                            inputs={
                                "x": (types_pb2.DT_INT16, (-1, 1)),
                                "temperature": (types_pb2.DT_FLOAT, (-1,)),
                            },
                            outputs={"y": (types_pb2.DT_FLOAT, (-1, 2))},
                            fn=rec.knobs,
                        )
                    }
                )
            }
        ),
    }


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "vocab.txt").write_text("".join(f"{t}\n" for t in VOCAB))
    (assets / "labels.txt").write_text("negative\nneutral\npositive\n")
    (assets / "species.txt").write_text("setosa\nversicolor\nvirginica\n")
    (assets / "stats.csv").write_text("feature,mean,std\na,50,10\nb,30,5\nc,40,20\nd,10,10\n")
    (tmp_path / "tfgate.toml").write_text(CONFIG)
    return tmp_path


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest_asyncio.fixture
async def fake(recorder: Recorder) -> AsyncIterator[FakeTFServing]:
    backend = FakeTFServing(models(recorder))
    await backend.start()
    yield backend
    await backend.stop()


@pytest_asyncio.fixture
async def start(config_dir: Path, start_gateway: StartGateway) -> Any:
    """Starts tfgate on port 0 with a config (CONFIG by default) in front of ``backend``."""

    async def start(backend: str, text: str | None = None, **settings: Any) -> Running:
        path = config_dir / "tfgate.toml"
        if text is not None:
            path.write_text(text)
        pipelines = Plans(pipeline_config.load(str(path)))
        return await start_gateway(backend, pipelines=pipelines, **settings)

    return start


@pytest_asyncio.fixture
async def gw(fake: FakeTFServing, start) -> Running:
    return await start(fake.target)


def labels_of(tensor: inference_pb2.Tensor) -> list[list[str]]:
    return np.array(tensor.strings).reshape(tuple(tensor.shape)).tolist()


# -- text in, labels out ---------------------------------------------------------------------


async def test_text_in_labels_and_scores_out(gw: Running, recorder: Recorder) -> None:
    texts = ["A GREAT movie, a good plot!", "Awful... boring, boring", "the unknown words"]
    answer = await gw.stub.Predict(
        PredictRequest(model="sentiment", inputs={"text": T(strings=texts)})
    )
    fed = recorder.fed[-1]["token_ids"]
    assert fed.dtype == np.int64 and fed.shape == (3, LENGTH)
    assert fed[0, :7].tolist() == [2, 6, 4, 2, 7, 5, 0]  # lowercase, tokenize, lookup, pad
    assert fed[2, :4].tolist() == [3, 1, 1, 0]  # out-of-vocabulary words
    assert set(answer.outputs) == {"label", "score"}
    label, score = answer.outputs["label"], answer.outputs["score"]
    assert label.dtype == "string" and list(label.shape) == [3, 2]
    assert labels_of(label) == [
        ["positive", "neutral"],
        ["negative", "neutral"],
        ["neutral", "negative"],
    ]
    assert score.dtype == "float32" and list(score.shape) == [3, 2]
    scores = np.array(score.floats).reshape(3, 2)
    assert (scores[:, 0] >= scores[:, 1]).all() and scores[0, 0] > 0.9


async def test_truncation_and_an_empty_batch(gw: Running, recorder: Recorder) -> None:
    words = " ".join(["good"] * 20 + ["awful"])
    await gw.stub.Predict(PredictRequest(model="sentiment", inputs={"text": T(strings=[words])}))
    assert recorder.fed[-1]["token_ids"].tolist() == [[7] * 16]
    answer = await gw.stub.Predict(PredictRequest(model="sentiment", inputs={"text": T(shape=[0])}))
    assert list(answer.outputs["label"].shape) == [0, 2]


async def test_output_filter_takes_domain_names(gw: Running, fake: FakeTFServing) -> None:
    answer = await gw.stub.Predict(
        PredictRequest(
            model="sentiment", inputs={"text": T(strings=["good"])}, output_filter=["score"]
        )
    )
    assert set(answer.outputs) == {"score"}
    await expect_error(
        gw.stub.Predict(
            PredictRequest(
                model="sentiment",
                inputs={"text": T(strings=["good"])},
                output_filter=["probabilities"],
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "output_filter: 'probabilities' is not an output of signature 'serving_default' of "
        "model 'sentiment' version 1 (outputs: label, score)",
    )


async def test_grpcurl_with_plain_text(gw: Running) -> None:
    body = json.dumps({"model": "sentiment", "inputs": {"text": {"strings": ["A great movie"]}}})
    code, out, err = await grpcurl(gw, "tfgate.v1.InferenceService/Predict", data=body)
    assert code == 0, err
    outputs = json.loads(out)["outputs"]
    assert outputs["label"]["strings"] == ["positive", "neutral"]
    assert outputs["label"]["shape"] == ["1", "2"] and outputs["score"]["dtype"] == "float32"


# -- numbers ---------------------------------------------------------------------------------


async def test_numeric_steps(gw: Running, recorder: Recorder) -> None:
    flat = [5.0, 3.0, 4.0, 1.0, 7.0, 3.5, 5.0, 10.0]  # two examples, sent flat, in cm / 10
    answer = await gw.stub.Predict(
        PredictRequest(model="iris", inputs={"measurements": T(floats=flat)})
    )
    fed = recorder.fed[-1]["features"]
    assert fed.dtype == np.float32 and fed.shape == (2, 4)
    # scale x10, reshape [-1, 4], normalize with the file's per-channel stats, clip to [-3, 3]
    np.testing.assert_allclose(fed, np.array([[0, 0, 0, 0], [2, 1, 0.5, 3]]), rtol=1e-6)
    assert set(answer.outputs) == {"species", "scores", "probabilities"}
    assert labels_of(answer.outputs["species"]) == [["setosa"], ["setosa"]]
    assert list(answer.outputs["probabilities"].shape) == [2, 3]


async def test_round_cast_expand_and_a_default(gw: Running, recorder: Recorder) -> None:
    answer = await gw.stub.Predict(
        PredictRequest(model="knobs", inputs={"x": T(floats=[1.4, 2.6, -3.5])})
    )
    fed = recorder.fed[-1]
    assert fed["x"].dtype == np.int16 and fed["x"].tolist() == [[1], [3], [-4]]
    assert fed["temperature"].tolist() == [0.5, 0.5, 0.5]  # the default, once per example
    y = answer.outputs["y_scaled"]
    assert y.dtype == "float32" and list(y.shape) == [3, 2]
    assert list(y.floats) == [0.5, 50, 1.5, 150, -2, -200]
    await gw.stub.Predict(
        PredictRequest(model="knobs", inputs={"x": T(ints=[2]), "temperature": T(floats=[3])})
    )
    assert recorder.fed[-1]["temperature"].tolist() == [3.0]


# -- refusals before the backend -------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        (
            PredictRequest(model="sentiment", inputs={"text": T(floats=[1.0])}),
            "input 'text': expects text (strings), got floats",
        ),
        (
            PredictRequest(model="sentiment", inputs={"text": T(bytes_values=[b"\xc3"])}),
            "input 'text': a bytes_values item is not UTF-8 text",
        ),
        (
            PredictRequest(model="sentiment", inputs={"token_ids": T(ints=[1])}),
            "input 'token_ids': not an input of signature 'serving_default' of model "
            "'sentiment' version 1 (inputs: text)",
        ),
        (
            PredictRequest(model="sentiment"),
            "inputs: missing 'text' (string [-1]), required by signature",
        ),
        (
            PredictRequest(model="iris", inputs={"measurements": T(floats=[1, 2, 3])}),
            "input 'measurements', step 2 'reshape': cannot reshape 3 values of shape [3] to "
            "[-1, 4]",
        ),
        (
            PredictRequest(model="iris", inputs={"measurements": T(strings=["tall"])}),
            "input 'measurements': expects float64",
        ),
        (
            PredictRequest(model="knobs", inputs={"x": T(floats=[40000])}),
            "input 'x', step 3 'cast': a value is out of range for int16",
        ),
        (
            PredictRequest(model="knobs", inputs={"x": T(floats=[1], shape=[1, 1])}),
            "input 'x', fed to 'x': shape [1, 1, 1] does not match the signature's [-1, 1]",
        ),
    ],
)
async def test_refused_with_the_input_and_step_named(
    gw: Running, fake: FakeTFServing, request_, needle: str
) -> None:
    await expect_error(gw.stub.Predict(request_), grpc.StatusCode.INVALID_ARGUMENT, needle)
    assert fake.calls["Predict"] == 0


# -- models without a section, other signatures ----------------------------------------------


async def test_models_without_a_section_are_unchanged(gw: Running) -> None:
    answer = await gw.stub.Predict(
        PredictRequest(model="half_plus_two", inputs={"x": T(floats=[1.0])})
    )
    assert list(answer.outputs["y"].floats) == [3.5]
    model = await gw.stub.GetModel(inference_pb2.GetModelRequest(model="half_plus_two"))
    assert not model.domain_signatures


# -- GetModel --------------------------------------------------------------------------------


async def test_get_model_shows_the_domain_view_beside_the_signature(gw: Running) -> None:
    model = await gw.stub.GetModel(inference_pb2.GetModelRequest(model="sentiment"))
    raw = model.signatures["serving_default"]
    assert list(raw.inputs) == ["token_ids"]
    domain = model.domain_signatures["serving_default"]
    text = domain.inputs["text"]
    assert (text.dtype, list(text.shape), text.alias) == ("string", [-1], "token_ids")
    assert list(text.steps) == [
        "lowercase",
        'tokenize("[a-z\']+")',
        "lookup(assets/vocab.txt: 10 tokens, oov_id=1)",
        "pad(length=16, value=0, truncate=end)",
    ]
    assert set(domain.outputs) == {"label", "score"}
    assert domain.outputs["label"].dtype == "string"
    knobs = await gw.stub.GetModel(inference_pb2.GetModelRequest(model="knobs"))
    temperature = knobs.domain_signatures["serving_default"].inputs["temperature"]
    assert temperature.optional and temperature.dtype == "float32"


# -- checks against the live signature -------------------------------------------------------

BAD_ALIAS = CONFIG.replace('alias = "token_ids"', 'alias = "tokens"')


async def test_a_misfit_stops_tfgate_at_start_up(fake: FakeTFServing, start, config_dir) -> None:
    with pytest.raises(PipelineConfigError) as info:
        await start(fake.target, BAD_ALIAS)
    assert str(info.value) == (
        f"config file {config_dir / 'tfgate.toml'}: model 'sentiment' version 1 input 'text': "
        "'tokens' is not an input of signature 'serving_default' (inputs: token_ids)"
    )


async def test_serve_exits_2_on_a_misfit(fake: FakeTFServing, config_dir: Path) -> None:
    (config_dir / "tfgate.toml").write_text(BAD_ALIAS)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tfgate",
        "serve",
        "--config",
        str(config_dir / "tfgate.toml"),
        "--listen",
        "127.0.0.1:0",
        "--backend",
        fake.target,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, (out, err)
    assert (
        "tfgate: configuration error: config file " in err.decode()
        and "model 'sentiment' version 1 input 'text': 'tokens' is not an input" in err.decode()
    )
    assert b"listening" not in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_backend_down_at_start_up_checks_on_first_use(
    recorder: Recorder, start, caplog
) -> None:
    port = _free_port()
    gw = await start(f"127.0.0.1:{port}", BAD_ALIAS)
    assert "is checked on first use" in caplog.text
    backend = FakeTFServing(models(recorder))
    await backend.start(port)
    try:
        for _ in range(200):  # until tfgate's channel has reconnected
            if gw.gateway.backend_up:
                break
            await asyncio.sleep(0.05)
        await expect_error(
            gw.stub.Predict(PredictRequest(model="sentiment", inputs={"text": T(strings=["x"])})),
            grpc.StatusCode.FAILED_PRECONDITION,
            "model 'sentiment' version 1 input 'text': 'tokens' is not an input of signature",
        )
        assert backend.calls["Predict"] == 0
        # The raw model stays reachable; only the configured signature is refused.
        model = await gw.stub.GetModel(inference_pb2.GetModelRequest(model="sentiment"))
        assert "token_ids" in model.signatures["serving_default"].inputs
        assert not model.domain_signatures
    finally:
        await backend.stop()


async def test_a_new_version_is_checked_again(
    fake: FakeTFServing, recorder: Recorder, start
) -> None:
    gw = await start(fake.target, metadata_ttl=0.05)
    good = PredictRequest(model="sentiment", inputs={"text": T(strings=["good"])})
    assert (await gw.stub.Predict(good)).version == 1
    fake.models["sentiment"].versions[2] = Version({"serving_default": sentiment_sig(recorder, 8)})
    await asyncio.sleep(0.1)
    await expect_error(
        gw.stub.Predict(good),
        grpc.StatusCode.FAILED_PRECONDITION,
        "model 'sentiment' version 2 input 'text': the steps give shape [-1, 16], but "
        "'token_ids' is [-1, 8]",
    )
    good.version = 1
    assert (await gw.stub.Predict(good)).version == 1
