"""Who may call what: API keys (keys), JSON Web Tokens (jwt), clients' rights (clients), the
gate every call passes (gate) and their settings (config)."""
