"""Who may call what: API keys (keys), clients' rights (clients), the gate every call passes
(gate) and their settings (config)."""
