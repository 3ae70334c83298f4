"""The grpc experiment flags tfgate's processes run with.

grpc's EventEngine client, listener and resolver (on by default in the grpcio releases tfgate
can run) make the bare pass-through cost 1.34-1.62x grpcio 1.66's CPU per call on 1.82.3; turned
off, grpc's older polling engine brings it to 1.13-1.20x (``make bench``, part "floor";
docs/performance.md, "Choosing grpcio").

grpc reads ``GRPC_EXPERIMENTS`` once, while ``grpc`` is first imported, and ignores later
changes; so the ``tfgate`` program sets it before anything imports grpc. A value already in
the environment (even an empty one) is the user's and wins. The names are those of the pinned
grpcio (requirements/runtime.txt): a release without one of them logs "Unknown experiment".
"""

from __future__ import annotations

from collections.abc import MutableMapping

VARIABLE = "GRPC_EXPERIMENTS"
EXPERIMENTS = "-event_engine_client,-event_engine_listener,-event_engine_dns"


def set_default(environ: MutableMapping[str, str]) -> None:
    """Puts EXPERIMENTS into ``environ`` unless it already has GRPC_EXPERIMENTS."""
    environ.setdefault(VARIABLE, EXPERIMENTS)
