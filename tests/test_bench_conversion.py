"""bench/conversion.py's REST figures compare like with like: both ways from the JSON body to
the backend request send the body's values, in its shape."""

from __future__ import annotations

import numpy as np
import orjson

from bench import conversion


def test_both_rest_ways_send_the_bodys_image() -> None:
    body = conversion.rest_body()
    image = np.asarray(orjson.loads(body)["instances"], dtype=np.float32)
    assert image.shape == (1, *conversion.IMAGE)
    tfgate_way, parse_dict_way = conversion.rest_routes(body)
    for way in (tfgate_way, parse_dict_way):
        sent = conversion.sent_values(way())
        assert sent.dtype == np.float32
        assert np.array_equal(sent, image)
