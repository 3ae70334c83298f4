# TensorFlow ships no type information: tf.Module and tf.function are Any to mypy.
# mypy: disallow-subclassing-any=False, disallow-untyped-decorators=False
"""Builds the demo SavedModels under models/ (`make models`).

Every weight is a constant written below, so two runs give models that answer identically
(the saved_model.pb bytes may still differ: TensorFlow names traced functions uniquely).
Each model is laid out as TF Serving expects, models/NAME/VERSION/saved_model.pb, and the
files a caller needs to prepare inputs (vocabulary, labels, feature statistics) go to
models/NAME_assets/, outside the version directories.

Models:

- half_plus_two: y = 0.5 * x + 2 (version 1) and y = 0.5 * x + 3 (version 2). Signatures:
  serving_default (x: float32 [-1] -> y), regress_x_to_y and classify_x_to_y (serialized
  tf.Example with a float feature "x" -> outputs / scores), as in TF Serving's test model.
- sentiment: token_ids int64 [-1, 16] -> probabilities float32 [-1, 3], a hand-set
  bag-of-words with a softmax over (negative, neutral, positive).
- iris: features float32 [-1, 4], standardised, -> probabilities float32 [-1, 3], a softmax
  over the negative squared distances to the standardised class means of Fisher's iris data.

`--conformance DIR` builds, instead, the models TF Serving's own tests run against (see
tests/test_conformance.py), laid out and named as in TF Serving's testdata, with a
models.config serving them all:

- saved_model_half_plus_two_cpu (123): a TF1 graph. serving_default feeds x, the float32
  (None, 1) tensor that parsing a tf.Example gives, -> y = 0.5x + 2; regress_x_to_y,
  regress_x_to_y2 (0.5x + 3) and classify_x_to_y take serialized tf.Examples; regress_x2_to_y3
  and classify_x2_to_y3 feed x2 (None, 1) -> 0.5x2 + 3.
- saved_model_half_plus_three (123): y = 0.5x + 3, whose signature has no tensor_shape at all.
- saved_model_half_plus_two_2_versions (123, 124): half_plus_two twice; the config labels them
  A and B.
- saved_model_counter (123): a float variable behind get_counter, incr_counter,
  incr_counter_by (input delta) and reset_counter, each with one scalar output.
- saved_model_half_plus_two_tf2_cpu (123): tf.saved_model.save of a tf.Module with the same
  signatures (serving_default takes x of shape [1]).
- tf_saved_model_save (123): y = 3 * 2 * x for x of any shape; and
  tf_saved_model_save_multiple_signatures (123): serving_default answers 1,
  custom_signature_key 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

SEQUENCE_LENGTH = 16

SENTIMENT_LABELS = ("negative", "neutral", "positive")
# Token -> logit contribution to (negative, neutral, positive). Ids follow this order after
# <pad> (0) and <unk> (1), which contribute nothing.
# fmt: off
_NEUTRAL_WORDS = (
    "a", "an", "and", "but", "film", "i", "is", "it", "movie", "of", "plot", "the", "this",
    "was", "acting", "story", "very", "really",
)
_POSITIVE_WORDS = (
    "great", "fantastic", "excellent", "good", "wonderful", "amazing", "love", "loved", "best",
    "brilliant", "enjoyable", "superb",
)
_NEGATIVE_WORDS = (
    "terrible", "awful", "bad", "boring", "worst", "hate", "hated", "horrible", "poor", "dull",
    "waste", "disappointing",
)
_LUKEWARM_WORDS = ("okay", "average", "fine", "mediocre", "decent")
# fmt: on
SENTIMENT_WEIGHTS: dict[str, tuple[float, float, float]] = {
    **dict.fromkeys(_NEUTRAL_WORDS, (0.0, 0.0, 0.0)),
    **dict.fromkeys(_POSITIVE_WORDS, (0.0, 0.0, 2.0)),
    **dict.fromkeys(_NEGATIVE_WORDS, (2.0, 0.0, 0.0)),
    **dict.fromkeys(_LUKEWARM_WORDS, (0.0, 1.5, 0.0)),
}
# An empty or all-unknown text is neutral.
SENTIMENT_BIAS = (0.0, 0.5, 0.0)

IRIS_LABELS = ("setosa", "versicolor", "virginica")
IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
# Published statistics of Fisher's iris data set (cm): overall mean and sample standard
# deviation of each feature, and the mean of each class.
IRIS_MEAN = (5.8433, 3.0573, 3.7580, 1.1993)
IRIS_STD = (0.8281, 0.4359, 1.7653, 0.7622)
IRIS_CLASS_MEANS = (
    (5.006, 3.428, 1.462, 0.246),
    (5.936, 2.770, 4.260, 1.326),
    (6.588, 2.974, 5.552, 2.026),
)


class HalfPlusTwo(tf.Module):
    def __init__(self, offset: float) -> None:
        super().__init__()
        self.a = tf.Variable(0.5, name="a")
        self.b = tf.Variable(offset, name="b")

    def _compute(self, x: tf.Tensor) -> tf.Tensor:
        return self.a * x + self.b

    def _parse_x(self, serialized: tf.Tensor) -> tf.Tensor:
        features = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})
        return features["x"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def predict(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": self._compute(x)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": self._compute(self._parse_x(inputs))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"scores": self._compute(self._parse_x(inputs))}

    def signatures(self) -> dict[str, object]:
        return {
            "serving_default": self.predict,
            "regress_x_to_y": self.regress,
            "classify_x_to_y": self.classify,
        }


class Sentiment(tf.Module):
    def __init__(self, token_weights: np.ndarray, bias: np.ndarray) -> None:
        super().__init__()
        self.token_weights = tf.Variable(token_weights, name="token_weights")
        self.bias = tf.Variable(bias, name="bias")

    @tf.function(
        input_signature=[tf.TensorSpec([None, SEQUENCE_LENGTH], tf.int64, name="token_ids")]
    )
    def predict(self, token_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = tf.reduce_sum(tf.gather(self.token_weights, token_ids), axis=1) + self.bias
        return {"probabilities": tf.nn.softmax(logits)}


class Iris(tf.Module):
    def __init__(self, centroids: np.ndarray) -> None:
        super().__init__()
        self.centroids = tf.Variable(centroids, name="centroids")

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
    def predict(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
        diff = features[:, tf.newaxis, :] - self.centroids[tf.newaxis, :, :]
        logits = -0.5 * tf.reduce_sum(tf.square(diff), axis=-1)
        return {"probabilities": tf.nn.softmax(logits)}


def sentiment_vocabulary() -> list[str]:
    return ["<pad>", "<unk>", *SENTIMENT_WEIGHTS]


def _save(module: tf.Module, export_dir: Path, signatures: object) -> None:
    if export_dir.exists():
        shutil.rmtree(export_dir)
    tf.saved_model.save(module, str(export_dir), signatures=signatures)


def _write_lines(path: Path, lines: list[str] | tuple[str, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def export_half_plus_two(out: Path) -> None:
    for version, offset in ((1, 2.0), (2, 3.0)):
        module = HalfPlusTwo(offset)
        _save(module, out / "half_plus_two" / str(version), module.signatures())


def export_sentiment(out: Path) -> None:
    vocabulary = sentiment_vocabulary()
    weights = np.zeros((len(vocabulary), len(SENTIMENT_LABELS)), dtype=np.float32)
    for token_id, token in enumerate(vocabulary):
        weights[token_id] = SENTIMENT_WEIGHTS.get(token, (0.0, 0.0, 0.0))
    module = Sentiment(weights, np.array(SENTIMENT_BIAS, dtype=np.float32))
    _save(module, out / "sentiment" / "1", {"serving_default": module.predict})
    _write_lines(out / "sentiment_assets" / "vocab.txt", vocabulary)
    _write_lines(out / "sentiment_assets" / "labels.txt", SENTIMENT_LABELS)


def export_iris(out: Path) -> None:
    mean = np.array(IRIS_MEAN, dtype=np.float32)
    std = np.array(IRIS_STD, dtype=np.float32)
    centroids = (np.array(IRIS_CLASS_MEANS, dtype=np.float32) - mean) / std
    module = Iris(centroids)
    _save(module, out / "iris" / "1", {"serving_default": module.predict})
    _write_lines(out / "iris_assets" / "labels.txt", IRIS_LABELS)
    _write_lines(
        out / "iris_assets" / "normalization.csv",
        [
            "feature,mean,std",
            *(f"{f},{m},{s}" for f, m, s in zip(IRIS_FEATURES, IRIS_MEAN, IRIS_STD, strict=True)),
        ],
    )


# --- The models of TF Serving's tests (--conformance) -----------------------------------------

CONFORMANCE_VERSION = 123
# name in models.config -> (directory, versions, version labels)
CONFORMANCE_MODELS: dict[str, tuple[str, tuple[int, ...], dict[str, int]]] = {
    "half_plus_two": ("saved_model_half_plus_two_cpu", (123,), {}),
    "half_plus_three": ("saved_model_half_plus_three", (123,), {}),
    "half_plus_two_2_versions": (
        "saved_model_half_plus_two_2_versions",
        (123, 124),
        {"A": 123, "B": 124},
    ),
    "counter": ("saved_model_counter", (123,), {}),
    "half_plus_two_tf2": ("saved_model_half_plus_two_tf2_cpu", (123,), {}),
    "tf_saved_model_save": ("tf_saved_model_save", (123,), {}),
    "tf_saved_model_save_multiple_signatures": (
        "tf_saved_model_save_multiple_signatures",
        (123,),
        {},
    ),
}

_v1 = tf.compat.v1
_REGRESS = "tensorflow/serving/regress"
_CLASSIFY = "tensorflow/serving/classify"
_PREDICT = "tensorflow/serving/predict"


def _signature(inputs: dict[str, tf.Tensor], outputs: dict[str, tf.Tensor], method: str) -> object:
    return _v1.saved_model.signature_def_utils.build_signature_def(
        {k: _v1.saved_model.utils.build_tensor_info(t) for k, t in inputs.items()},
        {k: _v1.saved_model.utils.build_tensor_info(t) for k, t in outputs.items()},
        method,
    )


def _save_graph(export_dir: Path, build: object) -> None:
    """Builds a TF1 graph with ``build(session) -> signature map`` and saves it."""
    if export_dir.exists():
        shutil.rmtree(export_dir)
    graph = tf.Graph()
    with graph.as_default(), _v1.Session(graph=graph) as session:
        signatures = build(session)  # type: ignore[operator]
        builder = _v1.saved_model.Builder(str(export_dir))
        builder.add_meta_graph_and_variables(
            session, [_v1.saved_model.tag_constants.SERVING], signature_def_map=signatures
        )
        builder.save()


def _half_plus_two_graph(session: object) -> dict[str, object]:
    """TF Serving's saved_model_half_plus_two graph: x and x2 parsed from tf.Examples."""
    a = _v1.Variable(0.5, name="a")
    b = _v1.Variable(2.0, name="b")
    c = _v1.Variable(3.0, name="c")
    serialized = _v1.placeholder(tf.string, shape=[None], name="tf_example")
    features = _v1.io.parse_example(
        serialized,
        {
            "x": _v1.io.FixedLenFeature([1], tf.float32),
            "x2": _v1.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
        },
    )
    x = tf.identity(features["x"], name="x")
    x2 = tf.identity(features["x2"], name="x2")
    y = tf.identity(a * x + b, name="y")
    y2 = tf.identity(a * x + c, name="y2")
    y3 = tf.identity(a * x2 + c, name="y3")
    session.run(_v1.global_variables_initializer())  # type: ignore[attr-defined]
    return {
        "serving_default": _signature({"x": x}, {"y": y}, _PREDICT),
        "regress_x_to_y": _signature({"inputs": serialized}, {"outputs": y}, _REGRESS),
        "regress_x_to_y2": _signature({"inputs": serialized}, {"outputs": y2}, _REGRESS),
        "regress_x2_to_y3": _signature({"inputs": x2}, {"outputs": y3}, _REGRESS),
        "classify_x_to_y": _signature({"inputs": serialized}, {"scores": y}, _CLASSIFY),
        "classify_x2_to_y3": _signature({"inputs": x2}, {"scores": y3}, _CLASSIFY),
    }


def _half_plus_three_graph(session: object) -> dict[str, object]:
    a = _v1.Variable(0.5, name="a")
    c = _v1.Variable(3.0, name="c")
    x = _v1.placeholder(tf.float32, name="x")
    y = tf.identity(a * x + c, name="y")
    session.run(_v1.global_variables_initializer())  # type: ignore[attr-defined]
    signature: Any = _signature({"x": x}, {"y": y}, _PREDICT)
    # As in TF Serving's saved_model_half_plus_three: no shape at all, not even unknown_rank.
    signature.inputs["x"].ClearField("tensor_shape")
    signature.outputs["y"].ClearField("tensor_shape")
    return {"serving_default": signature}


def _counter_graph(session: object) -> dict[str, object]:
    counter = _v1.Variable(0.0, dtype=tf.float32, name="counter")
    delta = _v1.placeholder(tf.float32, name="delta")
    # A resource variable's assignment is an op; identity() reads the value it leaves.
    incr = tf.identity(counter.assign_add(1.0))
    incr_by = tf.identity(counter.assign_add(delta))
    reset = tf.identity(counter.assign(0.0))
    session.run(_v1.global_variables_initializer())  # type: ignore[attr-defined]
    return {
        "get_counter": _signature({}, {"output": tf.identity(counter)}, _PREDICT),
        "incr_counter": _signature({}, {"output": incr}, _PREDICT),
        "incr_counter_by": _signature({"delta": delta}, {"output": incr_by}, _PREDICT),
        "reset_counter": _signature({}, {"output": reset}, _PREDICT),
    }


class HalfPlusTwoTF2(tf.Module):
    """TF Serving's native TF2 half_plus_two: the same signatures, traced tf.functions."""

    def __init__(self) -> None:
        super().__init__()
        self.a = tf.Variable(0.5, name="a")
        self.b = tf.Variable(2.0, name="b")
        self.c = tf.Variable(3.0, name="c")

    def _parse_x(self, serialized: tf.Tensor) -> tf.Tensor:
        spec = {
            "x": tf.io.FixedLenFeature([1], tf.float32),
            "x2": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
        }
        return tf.io.parse_example(serialized, spec)["x"]

    @tf.function(input_signature=[tf.TensorSpec([1], tf.float32)])
    def predict(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": self.a * x + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress_xy(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": self.a * self._parse_x(serialized) + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress_xy2(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": self.a * self._parse_x(serialized) + self.c}

    @tf.function(input_signature=[tf.TensorSpec([1], tf.float32, name="inputs")])
    def regress_x2y3(self, x2: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": self.a * x2 + self.c}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify_xy(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"scores": self.a * self._parse_x(serialized) + self.b}

    @tf.function(input_signature=[tf.TensorSpec([1], tf.float32, name="inputs")])
    def classify_x2y3(self, x2: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"scores": self.a * x2 + self.c}

    def signatures(self) -> dict[str, object]:
        return {
            "serving_default": self.predict,
            "regress_x_to_y": self.regress_xy,
            "regress_x_to_y2": self.regress_xy2,
            "regress_x2_to_y3": self.regress_x2y3,
            "classify_x_to_y": self.classify_xy,
            "classify_x2_to_y3": self.classify_x2y3,
        }


def _export_saved_model_save(out: Path) -> None:
    """test_tf_saved_model_save and its multiple-signature variant, as TF Serving builds them."""
    root = tf.train.Checkpoint()
    root.v1 = tf.Variable(3.0)
    root.v2 = tf.Variable(2.0)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    _save(
        root,
        out / "tf_saved_model_save" / str(CONFORMANCE_VERSION),
        root.f.get_concrete_function(tf.TensorSpec(None, tf.float32)),
    )
    multi = tf.train.Checkpoint()
    multi.f = tf.function(
        lambda x: {"y": tf.constant(1.0)}, input_signature=[tf.TensorSpec(None, tf.float32)]
    )
    multi.g = tf.function(
        lambda x: {"y": tf.constant(2.0)}, input_signature=[tf.TensorSpec(None, tf.float32)]
    )
    _save(
        multi,
        out / "tf_saved_model_save_multiple_signatures" / str(CONFORMANCE_VERSION),
        {"serving_default": multi.f, "custom_signature_key": multi.g},
    )


def conformance_config(out: Path) -> str:
    """models.config serving every conformance model from its directory under ``out``."""
    entries = []
    for name, (directory, _, labels) in CONFORMANCE_MODELS.items():
        lines = [
            "  config {",
            f'    name: "{name}"',
            f'    base_path: "{(out / directory).resolve()}"',
            '    model_platform: "tensorflow"',
            "    model_version_policy { all {} }",
        ]
        lines += [f'    version_labels {{ key: "{k}" value: {v} }}' for k, v in labels.items()]
        entries.append("\n".join([*lines, "  }"]))
    return "model_config_list {\n" + "\n".join(entries) + "\n}\n"


def export_conformance(out: Path) -> None:
    version = str(CONFORMANCE_VERSION)
    _save_graph(out / "saved_model_half_plus_two_cpu" / version, _half_plus_two_graph)
    _save_graph(out / "saved_model_half_plus_three" / version, _half_plus_three_graph)
    for v in CONFORMANCE_MODELS["half_plus_two_2_versions"][1]:
        _save_graph(out / "saved_model_half_plus_two_2_versions" / str(v), _half_plus_two_graph)
    _save_graph(out / "saved_model_counter" / version, _counter_graph)
    module = HalfPlusTwoTF2()
    _save(module, out / "saved_model_half_plus_two_tf2_cpu" / version, module.signatures())
    _export_saved_model_save(out)
    (out / "models.config").write_text(conformance_config(out), encoding="utf-8")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=Path("models"), help="models directory")
    parser.add_argument(
        "--conformance",
        type=Path,
        default=None,
        metavar="DIR",
        help="build the models of TF Serving's tests, and their models.config, in DIR instead",
    )
    args = parser.parse_args(argv)
    if args.conformance is not None:
        export_conformance(args.conformance)
        print(f"exported {', '.join(CONFORMANCE_MODELS)} to {args.conformance}")
        return 0
    export_half_plus_two(args.out)
    export_sentiment(args.out)
    export_iris(args.out)
    print(f"exported half_plus_two (1, 2), sentiment (1), iris (1) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
