"""What the request core calls for "TF Serving": the Backend interface and its implementations."""
