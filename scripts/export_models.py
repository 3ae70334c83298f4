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
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=Path("models"), help="models directory")
    args = parser.parse_args(argv)
    export_half_plus_two(args.out)
    export_sentiment(args.out)
    export_iris(args.out)
    print(f"exported half_plus_two (1, 2), sentiment (1), iris (1) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
