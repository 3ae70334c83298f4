"""A local stand-in for TF Serving: serves SavedModels with the TensorFlow runtime.

It speaks TF Serving's gRPC API (``tensorflow.serving.PredictionService`` and
``ModelService.GetModelStatus``) and reads TF Serving's model config file, so that a machine
without Docker or a TF Serving binary can run the gateway against real models. It needs the
``local`` extra (TensorFlow and the official ``tensorflow-serving-api``).

A package of its own beside ``tfgate``: tfgate's wheel and image leave it out, and the gateway
never imports it (``tfgate model-server`` only hands its arguments over). It lives in source
checkouts, where ``pip install -e '.[local]'`` puts it on the path; ``python -m
tfgate_model_server`` runs it.

This process uses the official ``tensorflow_serving`` protos and must never import tfgate's
generated copies of them (``tfgate.tfs``, ``tfgate.v1``) nor anything that does: both register
the same message names in protobuf's default pool. From tfgate it takes only pure modules that
import no protos: ``tfgate.wire`` (varints) and ``tfgate.dtypes`` (the DataType table).

Modules, from the pure core to the edges:

- ``errors``: the exceptions that carry a gRPC status.
- ``versions``: version directories, version policies and base paths (pure).
- ``tensors``: TensorProto <-> numpy with TF Serving's semantics (pure).
- ``config``: reads the model config file.
- ``servable``: one loaded SavedModel version and its TensorFlow session.
- ``manager``: every loaded version, and the ModelSpec -> version resolution.
- ``predict``, ``examples``, ``multi_inference``, ``metadata``: the RPCs' logic.
- ``service``: the gRPC servicers and server.
- ``cli``: ``python -m tfgate_model_server`` (``tfgate model-server``) and its lifecycle.
"""
