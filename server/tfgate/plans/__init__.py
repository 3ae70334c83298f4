"""Plans: how a model version's requests become TF Serving's inputs, and its answers come back."""
