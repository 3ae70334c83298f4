"""One loaded version of a model: its MetaGraphDef and a TensorFlow session over its graph.

Like TF Serving's ``SavedModelBundle``, a version is loaded with the TF1 loader into its own
graph and session, so signatures run by tensor name and TensorFlow's runtime errors keep their
status codes. Running is thread-safe and releases the GIL.

Values are fed as TF Serving feeds them, through the C++ session with no check of their shape
against the graph's static shapes: ``Session.run``'s Python layer refuses a value of shape
(1,) for a tensor of shape (None, 1), where TF Serving computes y = [3.0] for half_plus_two.
So ``run`` checks dtypes as the C++ session does and then calls ``BaseSession._do_run``, the
step ``Session.run`` takes after its Python-side checks.
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
from tensorflow.python.client import pywrap_tf_session

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
            outputs = self._run_unchecked(feeds, fetches, options)
        except tf.errors.OpError as exc:
            message = exc.message.removeprefix(_PYTHON_PREFIX)
            raise ServingError(
                message, _CODES.get(exc.error_code, grpc.StatusCode.UNKNOWN)
            ) from exc
        except (TypeError, ValueError, KeyError) as exc:
            # A tensor name the graph does not have.
            raise InvalidArgument(str(exc)) from exc
        return [np.asarray(o) for o in outputs]

    def _run_unchecked(
        self, feeds: Sequence[Feed], fetches: Sequence[str], options: Any
    ) -> list[Any]:
        graph = self._session.graph
        feed_dict = {graph.get_tensor_by_name(f.tensor).ref(): f.value for f in feeds}
        fetch_list = [graph.get_tensor_by_name(name) for name in fetches]
        buffer = (
            pywrap_tf_session.TF_NewBufferFromString(options.SerializeToString())
            if options is not None
            else None
        )
        try:
            outputs: list[Any] = self._session._do_run(
                None, [], fetch_list, feed_dict, buffer, None
            )
        finally:
            if buffer is not None:
                pywrap_tf_session.TF_DeleteBuffer(buffer)
        return outputs

    def close(self) -> None:
        self._session.close()
