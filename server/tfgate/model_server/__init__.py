"""A local stand-in for TF Serving: serves SavedModels with the TensorFlow runtime.

It speaks TF Serving's gRPC API (``tensorflow.serving.PredictionService`` and
``ModelService.GetModelStatus``) and reads TF Serving's model config file, so that a machine
without Docker or a TF Serving binary can run the gateway against real models. It needs the
``local`` extra (TensorFlow and the official ``tensorflow-serving-api``); the gateway never
imports it.

This process uses the official ``tensorflow_serving`` protos and must never import tfgate's
generated copies of them (``tfgate.tfs``) nor anything that does: both register the same
message names in protobuf's default pool.

Modules, from the pure core to the edges:

- ``errors``: the exceptions that carry a gRPC status.
- ``versions``: version directories, version policies and base paths (pure).
- ``tensors``: TensorProto <-> numpy with TF Serving's semantics (pure).
- ``config``: reads the model config file.
- ``servable``: one loaded SavedModel version and its TensorFlow session.
- ``manager``: every loaded version, and the ModelSpec -> version resolution.
- ``predict``, ``examples``, ``metadata``: the RPCs' logic.
- ``service``: the gRPC servicers and server.
- ``cli``: ``tfgate model-server`` and its lifecycle.
"""
