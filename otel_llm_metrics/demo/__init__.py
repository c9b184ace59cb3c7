"""The demo: an OpenAI-compatible app over a simulated upstream (``make demo`` runs it)."""
