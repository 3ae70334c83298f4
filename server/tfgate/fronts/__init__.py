"""The fronts: each translates one protocol to the inference core and back."""
