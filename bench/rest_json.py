"""Times TF Serving's REST JSON layer on a 224x224x3 image, against orjson alone.

Run: ``.venv/bin/python -m bench.rest_json``. Prints medians in milliseconds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import orjson

from tfgate import dtypes
from tfgate.fronts.http.tfserving_json import parse_predict, predict_body


def median_ms(fn: Callable[[], object], repeat: int = 30) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((224, 224, 3))
    body = orjson.dumps({"instances": [image.tolist()]})
    float32 = dtypes.BY_NAME["float32"]
    out = image[None].astype(np.float32)
    loads = median_ms(lambda: orjson.loads(body))
    parse = median_ms(lambda: parse_predict(body))
    dumps = median_ms(lambda: orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY))
    answer = median_ms(lambda: predict_body([("y", float32, out)], row_format=True))
    print(f"body {len(body) / 1e6:.1f} MB")
    print(f"orjson.loads          {loads:7.2f} ms")
    print(f"parse_predict         {parse:7.2f} ms  ({parse / loads:.2f}x orjson.loads)")
    print(f"orjson.dumps float32  {dumps:7.2f} ms")
    print(f"predict_body float32  {answer:7.2f} ms  ({answer / dumps:.2f}x orjson.dumps)")


if __name__ == "__main__":
    main()
