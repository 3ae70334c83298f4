"""One loaded version of a model: its MetaGraphDef and a TensorFlow session over its graph.

Like TF Serving's ``SavedModelBundle``, a version is loaded with the TF1 loader into its own
graph and session, so signatures run by tensor name through ``Session.run`` and TensorFlow's
runtime errors keep their status codes. ``Session.run`` is thread-safe and releases the GIL.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from tfgate_model_server.errors import InvalidArgument, ServingError, StartupError
from tfgate_model_server.tensors import dtype_name

logger = logging.getLogger(__name__)

SERVING_TAGS = ("serve",)

_CODES = {code.value[0]: code for code in grpc.StatusCode}
_PYTHON_PREFIX = "Graph execution error:\n\n"


@dataclass(frozen=True)
class Feed:
    """A value for one graph tensor, named as in a TensorInfo ("serving_default_x:0")."""

    tensor: str
    value: npt.NDArray[Any]


class Servable:
    """A SavedModel version ready to run."""

    def __init__(
        self, name: str, version: int, path: Path, meta_graph_def: Any, session: Any
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.meta_graph_def = meta_graph_def
        self._session = session

    @classmethod
    def load(cls, name: str, version: int, path: Path) -> Servable:
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph)
        try:
            with graph.as_default():
                meta_graph_def = tf.compat.v1.saved_model.loader.load(
                    session, list(SERVING_TAGS), str(path)
                )
        except (tf.errors.OpError, OSError, RuntimeError, ValueError) as exc:
            session.close()
            raise StartupError(
                f"Loading version {version} of model {name} from {path} failed: {exc}"
            ) from exc
        return cls(name, version, path, meta_graph_def, session)

    @property
    def signature_defs(self) -> Mapping[str, Any]:
        return self.meta_graph_def.signature_def  # type: ignore[no-any-return]

    def run(
        self, feeds: Sequence[Feed], fetches: Sequence[str], timeout: float | None = None
    ) -> list[npt.NDArray[Any]]:
        """Runs the graph; TensorFlow's errors come back as ServingError with their codes."""
        graph = self._session.graph
        for index, feed in enumerate(feeds):
            # Session.run would cast the value to the placeholder's dtype; the C++ session
            # TF Serving uses refuses a mismatch instead, and so do we.
            expected = graph.get_tensor_by_name(feed.tensor).dtype.as_datatype_enum
            given = tf.as_dtype(feed.value.dtype).as_datatype_enum
            if expected != given:
                raise InvalidArgument(
                    f"Expects arg[{index}] to be {dtype_name(expected)} but "
                    f"{dtype_name(given)} is provided"
                )
        options = None
        if timeout is not None:
            options = tf.compat.v1.RunOptions(timeout_in_ms=max(1, int(timeout * 1000)))
        try:
            outputs = self._session.run(
                list(fetches), {f.tensor: f.value for f in feeds}, options=options
            )
        except tf.errors.OpError as exc:
            message = exc.message.removeprefix(_PYTHON_PREFIX)
            raise ServingError(
                message, _CODES.get(exc.error_code, grpc.StatusCode.UNKNOWN)
            ) from exc
        except (TypeError, ValueError) as exc:
            # Python-side feed checks, e.g. a shape the placeholder cannot take.
            raise InvalidArgument(str(exc)) from exc
        return [np.asarray(o) for o in outputs]

    def close(self) -> None:
        self._session.close()
