"""TensorFlow's side of bench/conversion.py; run alone: ``python -m bench.conversion_tf N REPS``.

Imports TensorFlow, and so never tfgate's stubs. Prints one JSON line: the medians of
``tf.make_tensor_proto`` (from a float32 ndarray) and ``tf.make_ndarray`` (back), or a note
when TensorFlow is not installed.
"""

from __future__ import annotations

import json
import os
import sys

from bench.conversion import median_ms


def main() -> None:
    count, reps = int(sys.argv[1]), int(sys.argv[2])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import numpy as np
        import tensorflow as tf
    except ImportError as exc:
        print(json.dumps({"note": f"TensorFlow is not installed ({exc}); no tf figures"}))
        return
    values = np.random.default_rng(0).standard_normal(count).astype(np.float32)
    proto = tf.make_tensor_proto(values)
    print(
        json.dumps(
            {
                "tensorflow": tf.__version__,
                "tf_make_tensor_proto_ms": median_ms(lambda: tf.make_tensor_proto(values), reps),
                "tf_make_tensor_proto_serialized_ms": median_ms(
                    lambda: tf.make_tensor_proto(values).SerializeToString(), reps
                ),
                "tf_make_ndarray_ms": median_ms(lambda: tf.make_ndarray(proto), reps),
            }
        )
    )


if __name__ == "__main__":
    main()
