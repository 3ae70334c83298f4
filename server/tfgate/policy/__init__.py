"""Edge policies every front passes a call through: who the caller is, what it may call."""
