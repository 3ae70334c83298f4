"""Plans: how a model version's requests are turned into TF Serving's inputs and its answers back."""
