"""The request core's own request and answer types, the same for every front.

A front fills a ``Predict`` from its protocol (a tfgate.v1 message, or JSON) and writes the
``Answer`` back in its protocol. Inputs stay as they arrived, a tfgate.v1.Tensor or an array
(tfgate.tensors.Given), and outputs stay as TF Serving sent them until a front asks
(tfgate.tensors.Output): each front then converts once, in the form it writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tfgate.dtypes import DType
from tfgate.tensors import Array, Given, Output

# The key of the input of a request whose inputs have no names (TF Serving's REST API allows a
# plain list of values when the signature has one input; ``Predict.unnamed``): it feeds the
# signature's only input.
UNNAMED = ""


@dataclass(slots=True)
class Predict:
    """A prediction call: which model version and signature, and the inputs by name.

    Not frozen (a frozen dataclass costs a microsecond more to build, on every call); nothing
    changes it once a front has built it.
    """

    model: str
    version: int = 0
    label: str = ""
    signature: str = ""
    inputs: Mapping[str, Given] = field(default_factory=dict)
    output_filter: Sequence[str] = ()
    # Bytes the request arrived as: no request holds more values than it has bytes, so a
    # request at most max_tensor_elements bytes long needs no count.
    size: int = 0
    # Large float inputs' payloads, as found in the tfgate.v1 wire bytes (tfgate.wire): read in
    # place rather than copied out of the message.
    packed: Mapping[str, tuple[int, memoryview]] | None = None
    # The one input, under UNNAMED, came without a name.
    unnamed: bool = False


@dataclass(slots=True)
class Answer:
    """A prediction's outputs, by name, in the order TF Serving answered them."""

    model: str
    version: int
    signature: str
    outputs: Sequence[tuple[str, Output]]

    def arrays(self) -> list[tuple[str, DType, Array]]:
        """Every output as an array of its dtype: what the JSON fronts write."""
        return [(name, *out.array(f"output '{name}'")) for name, out in self.outputs]
